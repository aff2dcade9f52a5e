"""Serves firmware bundles to the devices on the LAN while an update runs.

    with BundleServer(bundle, host="192.168.1.20") as server:
        server.url_of("app.mpy")   # http://192.168.1.20:PORT/<manifest sha256>/app.mpy

Only the files a bundle's manifest names are served, under the manifest's hash (a
device holding an old URL gets 404, never another version's bytes). `Range: bytes=N-`
is answered with the rest of the file (206), so a device on poor WiFi resumes a
download instead of starting again. The standard library's threading HTTP server is
enough here: a few dozen devices fetching ~30 KB each, one thread per connection.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from station.fleet.bundle import MANIFEST, Bundle

log = logging.getLogger(__name__)

CHUNK = 4096
_RANGE = re.compile(r"^bytes=(\d+)-$")


class BundleServer:
    def __init__(self, bundle: Bundle, host: str = "127.0.0.1", port: int = 0) -> None:
        self.bundle = bundle
        self._files: dict[str, Path] = {
            f"/{bundle.digest}/{f['path']}": bundle.root / f["path"]
            for f in bundle.manifest["files"]
        }
        self._files[f"/{bundle.digest}/{MANIFEST}"] = bundle.root / MANIFEST
        self.served: Counter[str] = Counter()  # client address -> bytes sent
        self.requests: Counter[str] = Counter()  # path -> GETs answered 200/206
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server._get(self)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("bundle server %s: " + fmt, self.client_address[0], *args)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def url_of(self, path: str = MANIFEST) -> str:
        host, port = self.address
        return f"http://{host}:{port}/{self.bundle.digest}/{path}"

    def start(self) -> BundleServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="bundle-server", daemon=True
        )
        self._thread.start()
        log.info("serving firmware %s at %s", self.bundle.version, self.url_of())
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> BundleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _get(self, req: BaseHTTPRequestHandler) -> None:
        path = self._files.get(req.path)
        if path is None:
            req.send_error(HTTPStatus.NOT_FOUND, "not in this firmware bundle")
            return
        size = path.stat().st_size
        start = 0
        wanted = req.headers.get("Range")
        if wanted:
            found = _RANGE.match(wanted.strip())
            if found is None or int(found.group(1)) > size:
                req.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                req.send_header("Content-Range", f"bytes */{size}")
                req.send_header("Content-Length", "0")
                req.end_headers()
                return
            start = int(found.group(1))
        req.send_response(HTTPStatus.PARTIAL_CONTENT if wanted else HTTPStatus.OK)
        req.send_header("Content-Type", "application/octet-stream")
        req.send_header("Content-Length", str(size - start))
        if wanted:
            req.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        req.end_headers()
        sent = 0
        try:
            with path.open("rb") as fh:
                fh.seek(start)
                while chunk := fh.read(CHUNK):
                    req.wfile.write(chunk)
                    sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            log.info("bundle server: %s left during %s", req.client_address[0], req.path)
        with self._lock:
            self.served[req.client_address[0]] += sent
            self.requests[req.path] += 1

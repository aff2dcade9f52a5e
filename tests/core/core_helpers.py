"""Helpers for tests/core, imported as `core_helpers` (conftest.py puts this folder on
sys.path; a module named conftest would collide with tests/conftest.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHIP = "A4CF12EF5678"
AP_SSID = "esp32-dht11-Setup-EF5678"


# --- a fake device for answers the real firmware never gives ---------------------------


@dataclass
class Seen:
    method: str
    path: str
    body: bytes


Reply = tuple[int, str, bytes] | None  # (status, content type, body); None = drop the connection


@dataclass
class FakeDevice:
    """routes: (method, path) -> list of replies, used in order (the last one repeats)."""

    server: ThreadingHTTPServer
    routes: dict[tuple[str, str], list[Reply]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def route(self, method: str, path: str, *replies: Reply) -> None:
        self.routes[(method, path)] = list(replies)

    def json(self, method: str, path: str, obj: Any, status: int = 200) -> None:
        self.route(method, path, (status, "application/json", json.dumps(obj).encode()))

    def count(self, method: str, path: str) -> int:
        return sum(1 for s in self.seen if (s.method, s.path) == (method, path))

    def reply(self, method: str, path: str) -> Reply:
        replies = self.routes.get((method, path))
        if not replies:
            return 404, "application/json", b'{"error": "not_found", "detail": "no such endpoint"}'
        return replies.pop(0) if len(replies) > 1 else replies[0]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fake_handler(fake_ref: list[FakeDevice]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            fake = fake_ref[0]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fake.seen.append(Seen(self.command, self.path, body))
            reply = fake.reply(self.command, self.path)
            if reply is None:
                self.close_connection = True  # the response is "lost"
                return
            status, ctype, data = reply
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    return Handler

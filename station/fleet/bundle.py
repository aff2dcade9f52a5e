"""A firmware bundle: the built file set of one firmware version plus a manifest that
lets a device check every byte before it switches to it.

    bundle = make_bundle(Path("bundles"), version="1.1.0")
    bundle.manifest["files"]     # [{"path": "app.mpy", "size": 4012, "sha256": "…"}, …]
    bundle.manifest["sha256"]    # the manifest's own hash (see below)

manifest.json (format 1):

    {"format": 1, "version": "1.1.0",
     "files": [{"path": …, "size": …, "sha256": …}, …],   sorted by path
     "sha256": …}

`sha256` is the SHA-256 of the manifest without that key, encoded as canonical JSON
(sorted keys, no spaces, UTF-8), so the station can tell a device which manifest to
expect and the device can check the one it downloaded before trusting its file hashes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from station.errors import StationError
from station.sim import firmware

FORMAT = 1
MANIFEST = "manifest.json"


class BundleError(StationError):
    """A bundle could not be built, or one on disk is not what its manifest says."""


@dataclass(frozen=True)
class Bundle:
    root: Path  # manifest.json and the files, as devices download them
    manifest: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def digest(self) -> str:
        return str(self.manifest["sha256"])

    @property
    def size(self) -> int:
        return sum(int(f["size"]) for f in self.manifest["files"])


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def manifest_digest(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(
        canonical({k: v for k, v in manifest.items() if k != "sha256"})
    ).hexdigest()


def _file_entry(root: Path, rel: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    with (root / rel).open("rb") as fh:
        while chunk := fh.read(65536):
            digest.update(chunk)
            size += len(chunk)
    return {"path": rel.as_posix(), "size": size, "sha256": digest.hexdigest()}


def make_bundle(
    out: Path,
    *,
    version: str,
    board: str = "esp32",
    ap_passphrase: str = firmware.DEFAULT_PASSPHRASE,
) -> Bundle:
    """Build the firmware as `version` into out/<version>/ and write its manifest."""
    firmware.check_version(version)
    root = Path(out) / version
    build = firmware.build(root, board=board, ap_passphrase=ap_passphrase, version=version)
    files = sorted(build.files, key=lambda p: p.as_posix())
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": version,
        "files": [_file_entry(root, rel) for rel in files],
    }
    manifest["sha256"] = manifest_digest(manifest)
    (root / MANIFEST).write_bytes(canonical(manifest))
    return Bundle(root, manifest)


def load_bundle(root: Path) -> Bundle:
    """A bundle on disk, checked against its manifest (BundleError says what differs)."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise BundleError(f"{root}: no {MANIFEST}: not a firmware bundle") from None
    except ValueError as exc:
        raise BundleError(f"{root / MANIFEST}: not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{root / MANIFEST}: not a format-{FORMAT} manifest")
    if manifest.get("sha256") != manifest_digest(manifest):
        raise BundleError(f"{root / MANIFEST}: its sha256 does not match its content")
    for entry in manifest.get("files", []):
        rel = Path(entry["path"])
        if rel.is_absolute() or ".." in rel.parts:
            raise BundleError(f"{root / MANIFEST}: file path {entry['path']!r} leaves the bundle")
        try:
            found = _file_entry(root, rel)
        except FileNotFoundError:
            raise BundleError(f"{root}: {entry['path']} is missing") from None
        if found != entry:
            raise BundleError(f"{root}: {entry['path']} differs from the manifest")
    return Bundle(root, manifest)


def remove_bundle(bundle: Bundle) -> None:
    shutil.rmtree(bundle.root, ignore_errors=True)

"""A firmware bundle: the built file set of one firmware version plus a manifest that
lets a device check every byte before it switches to it.

    bundle = make_bundle(Path("bundles"), version="1.1.0")
    bundle.manifest["files"]     # [{"path": "app.mpy", "size": 4012, "sha256": "…"}, …]
    bundle.manifest["sha256"]    # the manifest's own hash (see below)

manifest.json (format 1), canonical JSON (sorted keys, no spaces, UTF-8):

    {"files": [{"path": …, "sha256": …, "size": …}, …], "format": 1, "version": "1.1.0"}

The manifest's own hash is the SHA-256 of that file's bytes, kept beside it as
manifest.sha256 and sent in the update command: a device hashes the manifest as it
downloads it (MicroPython's hashlib, no JSON re-encoding on the device) and trusts its
file hashes only if that matches.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from station.errors import StationError
from station.sim import firmware

FORMAT = 1
MANIFEST = "manifest.json"
DIGEST = "manifest.sha256"


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
        """The SHA-256 of manifest.json's bytes."""
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
    src: Path = firmware.FIRMWARE_DIR,
) -> Bundle:
    """Build the firmware as `version` into out/<version>/ and write its manifest."""
    firmware.check_version(version)
    root = Path(out) / version
    build = firmware.build(root, board=board, ap_passphrase=ap_passphrase, version=version, src=src)
    files = sorted(build.files, key=lambda p: p.as_posix())
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": version,
        "files": [_file_entry(root, rel) for rel in files],
    }
    (root / MANIFEST).write_bytes(canonical(manifest))
    manifest["sha256"] = manifest_digest(manifest)
    (root / DIGEST).write_text(manifest["sha256"] + "\n", encoding="ascii")
    return Bundle(root, manifest)


# What make_crashing_bundle puts in place of app.py: the import main.py does first.
CRASHING_APP = (
    "# A firmware that crashes at boot, on purpose (station fleet update --bad-bundle):\n"
    "# the device must drop it by itself and go back to the set it ran before.\n"
    "raise RuntimeError('this firmware crashes at boot (a deliberately bad bundle)')\n"
)


def make_crashing_bundle(
    out: Path,
    *,
    version: str,
    board: str = "esp32",
    ap_passphrase: str = firmware.DEFAULT_PASSPHRASE,
) -> Bundle:
    """A bad bundle for demos and tests: every hash in it is right (the device downloads,
    verifies and boots it), but its app raises at import, so each boot of it ends in a
    reset. The device's boot count drops it after fwboot.MAX_TRIAL_BOOTS and the old set
    reports `rolled_back` ("crashed at boot"): what a broken release does in the field."""
    with tempfile.TemporaryDirectory(prefix="fw-bad-src-") as tmp:
        src = Path(tmp) / "firmware"
        shutil.copytree(firmware.FIRMWARE_DIR, src, ignore=shutil.ignore_patterns("__pycache__"))
        (src / "app.py").write_text(CRASHING_APP, encoding="utf-8")
        return make_bundle(out, version=version, board=board, ap_passphrase=ap_passphrase, src=src)


def load_bundle(root: Path) -> Bundle:
    """A bundle on disk, checked against its manifest (BundleError says what differs)."""
    root = Path(root)
    try:
        raw = (root / MANIFEST).read_bytes()
        expected = (root / DIGEST).read_text(encoding="ascii").strip()
    except FileNotFoundError as exc:
        raise BundleError(
            f"{root}: no {Path(str(exc.filename)).name}: not a firmware bundle"
        ) from None
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise BundleError(f"{root / MANIFEST}: not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{root / MANIFEST}: not a format-{FORMAT} manifest")
    if hashlib.sha256(raw).hexdigest() != expected:
        raise BundleError(f"{root / MANIFEST}: its sha256 does not match {DIGEST}")
    manifest["sha256"] = expected
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

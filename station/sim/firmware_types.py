"""The firmware's type check against MicroPython's own stubs of the ESP32 port (issue 12).

No ESP32 is within reach of the tests, so this is what proves that the firmware calls
the ESP32's MicroPython API as it is: names, arguments, constants, return types, as
`micropython-esp32-esp32-generic-stubs` (generated from the 1.29 firmware itself)
declares them, with MicroPython's standard library (`micropython-stdlib-stubs`) as the
typeshed. A misspelt or removed API fails `make test`.

    python -m station.sim.firmware_types          # what `make test` runs

The stubs are pinned in firmware/typings.txt and installed by the Makefile into
.venv/mpy-typings (they are loose top-level .pyi files, not a stub package mypy finds
in a venv). The firmware has no annotations, so function bodies are checked with
check_untyped_defs; the stubs' own few errors are not ours and are silenced.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from station.sim.firmware import FIRMWARE_DIR

INSTALL_HINT = "make test (or: pip install --target .venv/mpy-typings -r firmware/typings.txt)"
# Modules of the stubs whose own errors mypy reports (not the firmware's).
STUB_MODULES = ("machine", "network", "vfs", "math", "_mpy_shed.*")


@dataclass(frozen=True)
class TypeCheck:
    ok: bool
    output: str


def default_typings() -> Path:
    return Path(sys.prefix) / "mpy-typings"


def check(src: Path = FIRMWARE_DIR, typings: Path | None = None) -> TypeCheck:
    typings = Path(typings or default_typings()).resolve()
    if not (typings / "network.pyi").is_file() or not (typings / "stdlib").is_dir():
        raise FileNotFoundError(f"no MicroPython stubs in {typings}: {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="fw-types-") as tmp:
        config = Path(tmp) / "mypy.ini"
        config.write_text(
            "[mypy]\n"
            f"mypy_path = {typings}\n"
            f"custom_typeshed_dir = {typings}\n"
            "check_untyped_defs = True\n"
            "warn_unused_ignores = True\n"
            f"cache_dir = {Path(tmp) / 'cache'}\n"
            f"\n[mypy-{','.join(STUB_MODULES)}]\nignore_errors = True\n",
            encoding="utf-8",
        )
        proc = subprocess.run(
            [sys.executable, "-m", "mypy", "--config-file", str(config), "."],
            cwd=src,
            capture_output=True,
            text=True,
            timeout=600,
        )
    return TypeCheck(proc.returncode == 0, (proc.stdout + proc.stderr).strip())


def main() -> int:
    try:
        result = check()
    except FileNotFoundError as exc:
        print(f"firmware type check: {exc}", file=sys.stderr)
        return 2
    print("firmware (ESP32 stubs 1.29):", result.output)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

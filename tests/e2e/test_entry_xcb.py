"""A fresh Linux desktop without Qt's xcb libraries: `station` says exactly what to
install (and what works meanwhile) before Qt can abort with its bare message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from station.ui import app

# What `ldd libqxcb.so` printed on this kind of machine (FIELD-NOTES.md).
LDD_MISSING = """\
\tlinux-vdso.so.1 (0x00007ffd5a1f2000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f0c1c800000)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f0c1c7d0000)
"""
LDD_COMPLETE = """\
\tlinux-vdso.so.1 (0x00007ffd5a1f2000)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f0c1c900000)
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f0c1c7d0000)
"""


def test_missing_libraries_are_read_from_ldd():
    assert app.missing_xcb_libraries(LDD_MISSING) == [
        "libxcb-cursor.so.0",
        "libxcb-icccm.so.4",
        "libxcb-keysyms.so.1",
    ]
    assert app.missing_xcb_libraries(LDD_COMPLETE) == []
    assert app.missing_xcb_libraries(None) == []  # no ldd: let Qt try


def test_the_message_names_the_packages_and_what_works_meanwhile():
    text = app.xcb_problem(lambda _path: LDD_MISSING)
    assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1" in text
    assert "station provision" in text and "env -u DISPLAY station" in text
    assert app.xcb_problem(lambda _path: LDD_COMPLETE) is None


def test_an_unknown_library_is_still_named():
    text = app.xcb_problem(lambda _path: "\tlibxcb-frobnicate.so.7 => not found\n")
    assert "libxcb-frobnicate.so.7" in text and "apt-get install" not in text


def test_the_check_looks_at_pyside6s_own_plugin():
    seen: list[Path] = []
    app.xcb_problem(lambda path: seen.append(path) or LDD_COMPLETE)
    assert seen == [app.xcb_plugin()] and seen[0].is_file()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DISPLAY": ":0"}, True),
        ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"}, True),
        ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, False),
        ({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, False),
        ({"WAYLAND_DISPLAY": "wayland-0", "QT_QPA_PLATFORM": "xcb"}, True),
    ],
)
def test_only_the_xcb_platform_is_checked(env, expected):
    assert app.uses_xcb(env) is expected


def test_station_says_what_to_install_instead_of_a_qt_abort(tmp_path, user_env):
    # The real entry point; only `ldd` on PATH answers as on a fresh desktop.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ldd = bin_dir / "ldd"
    ldd.write_text(f"#!/bin/sh\ncat <<'EOF'\n{LDD_MISSING}EOF\n")
    ldd.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update(user_env, DISPLAY=":77", PATH=f"{bin_dir}{os.pathsep}{env['PATH']}")
    proc = subprocess.run(
        [sys.executable, "-m", "station", "--demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1" in proc.stderr
    assert "env -u DISPLAY station" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Could not load the Qt platform plugin" not in proc.stderr

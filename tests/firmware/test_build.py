"""The deployable file set: every firmware file compiles with mpy-cross and nothing
shadows a real module."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from station.sim import firmware
from station.sim.firmware import FIRMWARE_DIR, FirmwareError

# Modules an ESP32 MicroPython build has built in or frozen. The board runs files
# from its flash *before* frozen ones, so a firmware file with one of these names
# would silently replace the real module.
ESP32_MODULES = {
    "machine",
    "network",
    "dht",
    "esp",
    "esp32",
    "neopixel",
    "onewire",
    "ds18x20",
    "umqtt",
    "ntptime",
    "webrepl",
    "webrepl_setup",
    "inisetup",
    "flashbdev",
    "_boot",
    "upysh",
    "requests",
    "urequests",
    "mip",
    "espnow",
    "aioespnow",
    "bluetooth",
    "asyncio",
    "uasyncio",
    "json",
    "socket",
    "select",
    "time",
    "os",
    "sys",
    "gc",
    "struct",
    "binascii",
    "hashlib",
    "random",
    "errno",
    "io",
    "re",
    "math",
    "ssl",
    "tls",
    "micropython",
    "collections",
    "array",
    "framebuf",
    "cryptolib",
    "deflate",
    "heapq",
    "platform",
    "vfs",
    "btree",
    "_thread",
    "uctypes",
    "zlib",
    "lwip",
}


def test_every_firmware_file_compiles_with_mpy_cross(tmp_path):
    build = firmware.build(tmp_path / "out", board="host")
    sources = firmware.source_files("host")
    assert len(build.files) == len(sources) >= 10
    for rel in sources:
        name = rel.as_posix()
        built = (
            tmp_path / "out" / (name if name in firmware.SOURCE_ONLY else rel.with_suffix(".mpy"))
        )
        assert built.is_file(), name
        if built.suffix == ".mpy":
            assert firmware.mpy_version(built)[0] == 6  # MicroPython >= 1.20 loads it


def test_esp32_build_leaves_out_the_host_board(tmp_path):
    build = firmware.build(tmp_path / "out", board="esp32")
    names = {f.as_posix() for f in build.files}
    assert {"boot.py", "main.py", "app.mpy", "board/__init__.mpy", "board/esp32.mpy"} <= names
    assert not [n for n in names if "host_" in n]
    assert not [n for n in names if n.endswith(".py") and n not in firmware.SOURCE_ONLY]


def test_ap_passphrase_is_set_per_build(tmp_path):
    firmware.build(tmp_path / "out", board="host", ap_passphrase="s3cret-batch-7")
    text = _disassemble(tmp_path / "out" / "factory.mpy")
    assert "s3cret-batch-7" in text and "12345678" not in text


@pytest.mark.parametrize(
    "bad", ["short", "x" * 64, 'quote"inside', "tab\tinside", "naïve-passphrase"]
)
def test_bad_ap_passphrase_is_refused(tmp_path, bad):
    with pytest.raises(FirmwareError):
        firmware.build(tmp_path / "out", ap_passphrase=bad)


def test_unknown_board_is_refused(tmp_path):
    with pytest.raises(FirmwareError, match="unknown board"):
        firmware.build(tmp_path / "out", board="esp8266")


def test_no_firmware_module_shadows_a_real_one():
    top = {p.stem for p in FIRMWARE_DIR.glob("*.py")} | {
        p.name for p in FIRMWARE_DIR.iterdir() if p.is_dir()
    }
    top -= {"boot", "main", "__pycache__"}
    assert not top & ESP32_MODULES
    # host-only board files can never be taken for hardware modules
    for p in (FIRMWARE_DIR / "board").glob("*.py"):
        assert p.stem in {"__init__", "esp32"} or p.stem.startswith("host_"), p.name


def test_a_syntax_error_is_reported_with_the_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.py").write_text("import app\n")
    (src / "app.py").write_text("def broken(:\n")
    with pytest.raises(FirmwareError, match=r"app\.py"):
        firmware.build(tmp_path / "out", src=src)


def _disassemble(mpy: Path) -> str:
    # The qstr table of an .mpy holds its string constants as plain bytes.
    return mpy.read_bytes().decode("latin-1")


def test_build_runs_on_the_unix_port(tmp_path):
    """The compiled modules import on MicroPython itself (not just compile)."""
    out = tmp_path / "out"
    firmware.build(out, board="host")
    from station.sim.device import find_micropython

    code = "import factory, validate, httpd, devconfig, util, net, trial; print(factory.MODEL)"
    proc = subprocess.run(
        [find_micropython(), "-X", "heapsize=96k", "-c", code],
        env={"MICROPYPATH": f".frozen:{out}"},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "esp32-dht11"


FAKE_HARDWARE = {
    # Just enough of the ESP32 port's API for board/esp32.py to be exercised on the
    # unix port: catches typos and wrong call shapes the compiler cannot see.
    "machine.py": """
class Pin:
    OUT = 1
    IN = 0
    PULL_UP = 2
    def __init__(self, n, mode=None, pull=None, value=None):
        self.n = n; self.v = 1 if n == 0 else (value or 0)
    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v
_rtc = [b""]
class RTC:
    def memory(self, data=None):
        if data is None:
            return _rtc[0]
        _rtc[0] = bytes(data)
def unique_id():
    return b"\\xa4\\xcf\\x12\\xef\\x56\\x78"
def reset():
    raise SystemExit(3)
""",
    "network.py": """
STA_IF = 0
AP_IF = 1
AUTH_WPA2_PSK = 3
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_WRONG_PASSWORD = 202
STAT_NO_AP_FOUND = 201
NO_RECONNECTS = False  # True: firmware without the `reconnects` option
class WLAN:
    # Like the ESP32 port: status() says STAT_CONNECTING while the STA retries and,
    # once it has given up (only with a finite `reconnects`), the last ESP-IDF
    # disconnect reason. SSID "reason-N" fails with reason N; a wrong password
    # fails like a real one mostly does, with 15 (4-way handshake timeout).
    def __init__(self, i):
        self.i = i; self.on = False; self.st = STAT_IDLE; self.cfg = {}; self.polls = 0
    def active(self, on=None):
        if on is None:
            return self.on
        self.on = on
    def config(self, *a, **kw):
        if a:
            return b"\\xa4\\xcf\\x12\\xef\\x56\\x78" if a[0] == "mac" else self.cfg[a[0]]
        if "reconnects" in kw and NO_RECONNECTS:
            raise ValueError("unknown config param")
        self.cfg.update(kw)
    def connect(self, ssid, pw):
        self.polls = 2
        if ssid == "MyHomeWiFi" and pw == "mypassword":
            self.st = STAT_GOT_IP
        elif ssid.startswith("reason-"):
            self.st = int(ssid[7:])
        else:
            self.st = 15
        if self.st != STAT_GOT_IP and self.cfg.get("reconnects", -1) < 0:
            self.polls = 10 ** 9  # retries forever
    def disconnect(self):
        self.st = STAT_IDLE; self.polls = 0
    def isconnected(self):
        return self.st == STAT_GOT_IP and not self.polls
    def status(self, what=None):
        if what == "rssi":
            return -61
        if self.polls:
            self.polls -= 1
            return STAT_CONNECTING
        return self.st
    def ifconfig(self):
        return ("192.168.29.57", "255.255.255.0", "192.168.29.1", "192.168.29.1")
    def scan(self):
        return [(b"MyHomeWiFi", b"\\x01" * 6, 6, -51, 3, False),
                (b"\\xff\\xfe", b"\\x02" * 6, 1, -70, 0, False)]
""",
    "dht.py": """
class DHT11:
    def __init__(self, pin):
        pass
    def measure(self):
        pass
    def temperature(self):
        return 21
    def humidity(self):
        return 40
""",
}

ESP32_BOARD_SCRIPT = """
from board.esp32 import Board
b = Board()
assert b.chip_id() == "A4CF12EF5678", b.chip_id()
assert b.mac() == "A4:CF:12:EF:56:78"
assert b.button_held() is False
b.led(True)
b.ap_up("esp32-dht11-Setup-EF5678", "12345678")
assert b._ap.cfg["essid"] == "esp32-dht11-Setup-EF5678"
assert b.sta_status() == "idle"
def settle():
    seen = [b.sta_status()]
    while seen[-1] == "connecting" and len(seen) < 20:
        seen.append(b.sta_status())
    return seen
b.sta_connect("MyHomeWiFi", "wrong-password")
assert b._sta.cfg["reconnects"] == 2
assert settle() == ["connecting", "connecting", "wrong_password"]
for code, word in ((15, "wrong_password"), (202, "wrong_password"), (204, "wrong_password"),
                   (205, "wrong_password"), (201, "no_ap_found"), (210, "no_ap_found"),
                   (211, "no_ap_found"), (212, "no_ap_found"), (200, "failed"), (203, "failed")):
    b.sta_connect("reason-%d" % code, "whatever1")
    seen = settle()
    assert seen[0] == "connecting" and seen[-1] == word, (code, seen)
b.sta_connect("MyHomeWiFi", "mypassword")
assert settle()[-1] == "connected"
assert b.sta_ip() == "192.168.29.57" and b.sta_rssi() == -61
b.sta_disconnect()
assert b.sta_status() == "idle"
assert b.scan() == [("MyHomeWiFi", -51, True), (None, -70, False)]
assert b.read_dht() == (21, 40)
assert b.rtc_write(b"note") and b.rtc_read() == b"note"
assert b.route("station.local", 1883) == ("station.local", 1883)
b.ap_down()
import network
network.NO_RECONNECTS = True  # older firmware: no crash, the trial just times out
b2 = Board()
b2.sta_connect("MyHomeWiFi", "wrong-password")
assert "reconnects" not in b2._sta.cfg and set(b2.sta_status() for _ in range(20)) == {"connecting"}
print("ok")
"""


def test_the_esp32_board_runs_against_fake_hardware(tmp_path):
    out = tmp_path / "out"
    firmware.build(out, board="host")  # board/__init__ picks host_board on linux: it must import
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    for name, text in FAKE_HARDWARE.items():
        (fakes / name).write_text(text)
    from station.sim.device import find_micropython

    proc = subprocess.run(
        [find_micropython(), "-X", "heapsize=96k", "-c", ESP32_BOARD_SCRIPT],
        env={"MICROPYPATH": f".frozen:{fakes}:{out}"},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr

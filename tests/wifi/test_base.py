"""Input checks, the command runner (timeouts, cancel, redaction) and the probes."""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import ClassVar

import pytest

from station.wifi import _run
from station.wifi.base import DeviceAddress, validate
from station.wifi.errors import Cancelled, CommandTimeout, InvalidNetworkSettings, WifiUnavailable
from station.wifi.journal import Journal, JournalEntry
from station.wifi.probe import http_json_probe, tcp_probe

pytestmark = pytest.mark.timeout(20)


def test_validate():
    assert validate("x" * 32, "12345678", "24:0A:C4:12:34:56") == "24:0a:c4:12:34:56"
    assert validate("ü" * 16, "", None) is None  # 32 bytes
    for ssid, pw, bssid in [
        ("ü" * 17, "", None),
        ("", "12345678", None),
        ("a", "1234567", None),
        ("a", "x" * 64, None),
        ("a", "12345678", "24:0a:c4"),
    ]:
        with pytest.raises(InvalidNetworkSettings):
            validate(ssid, pw, bssid)
    assert validate("a", "ab" * 32, None) is None  # 64 hex digits: a raw PSK


def test_run_kills_a_hanging_tool_and_its_children(fake_bin):
    fake_bin.script(
        "hang",
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "time.sleep(30)\n",
    )
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout, match="'hang' did not finish within"):
        _run.run(["hang"], timeout=0.3)
    assert time.monotonic() - t0 < 2


def test_run_cancel_and_missing_tool(fake_bin):
    fake_bin.script("slow", "import time; time.sleep(30)\n")
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    with pytest.raises(Cancelled):
        _run.run(["slow"], timeout=10, cancel=cancel)
    with pytest.raises(WifiUnavailable, match="'nmcli' is not installed"):
        _run.run(["nmcli"], timeout=1)


def test_run_redacts_secrets_in_argv_output_and_log(fake_bin, caplog):
    caplog.set_level("DEBUG", logger="station.wifi")
    fake_bin.script("echo", "import sys; print('got', sys.argv[1:]); sys.exit(3)\n")
    r = _run.run(["echo", "ssid", "s3cr3t pass"], timeout=5, secrets=["s3cr3t pass"])
    assert r.returncode == 3 and r.argv == ("echo", "ssid", "***")
    assert "s3cr3t" not in r.stdout and "***" in r.stdout
    assert "s3cr3t" not in caplog.text


class _Api(http.server.BaseHTTPRequestHandler):
    body: ClassVar[dict] = {"chip_id": "A4CF12EF5678", "model": "esp32-dht11"}

    def do_GET(self):
        data = json.dumps(self.body if self.path == "/api/info" else {}).encode()
        self.send_response(200 if self.path == "/api/info" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_probes(api):
    addr = DeviceAddress("127.0.0.1", api)
    assert http_json_probe()(addr) is True
    assert http_json_probe("/nope")(addr) is False
    assert tcp_probe(port=api)(DeviceAddress("127.0.0.1")) is True
    with pytest.raises(OSError):
        tcp_probe(port=1, timeout=0.2)(DeviceAddress("127.0.0.1"))


def test_journal_round_trip_and_atomic_replace(tmp_path):
    from station.wifi.base import HomeNetwork

    j = Journal(tmp_path / "a" / "j.json")
    assert j.read() is None
    e = JournalEntry(
        backend="pywifi",
        home=HomeNetwork("Home", "0", {"enabled": "0 1"}),
        target="esp32-x",
        profiles=["3/esp32-station-tmp-1"],
    )
    j.write(e)
    back = j.read()
    assert back.home == e.home and back.profiles == e.profiles and back.target == "esp32-x"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["j.json"]  # no temp file left
    (tmp_path / "a" / "j.json").write_text("{broken")
    assert j.read() is None
    j.clear()
    j.clear()

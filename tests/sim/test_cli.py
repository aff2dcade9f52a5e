"""`station firmware build|deploy`, `station sim-device` and `station sim` as a person runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from support import wait_for

from station.cli import main
from station.sim.air import Air
from station.sim.fleet import fleet_chip_ids

MAIN = Path(__file__).resolve().parents[2] / "main.py"


def test_firmware_build_writes_the_file_set(tmp_path, capsys):
    out = tmp_path / "fw"
    assert main(["firmware", "build", "--out", str(out)]) == 0
    assert {"boot.py", "main.py", "app.mpy"} <= {p.name for p in out.iterdir()}
    assert (out / "board" / "esp32.mpy").is_file()
    assert not (out / "board" / "host_board.mpy").exists()
    assert f"in {out}" in capsys.readouterr().out


def test_firmware_build_refuses_a_bad_passphrase(tmp_path, capsys):
    assert (
        main(["firmware", "build", "--out", str(tmp_path / "fw"), "--ap-passphrase", "short"]) == 2
    )
    assert "8-63" in capsys.readouterr().err


@pytest.fixture
def fake_mpremote(tmp_path) -> tuple[Path, Path]:
    """An mpremote stand-in that records its arguments (no board needed)."""
    record = tmp_path / "calls.json"
    tool = tmp_path / "mpremote"
    tool.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"calls = json.load(open({str(record)!r})) if os.path.exists({str(record)!r}) else []\n"
        "calls.append(sys.argv[1:])\n"
        f"json.dump(calls, open({str(record)!r}, 'w'))\n"
        "sys.exit(int(os.environ.get('FAKE_MPREMOTE_RC', '0')))\n"
    )
    tool.chmod(0o755)
    return tool, record


def test_deploy_copies_the_build_keeps_the_config_and_resets(fake_mpremote, capsys):
    tool, record = fake_mpremote
    rc = main(["firmware", "deploy", "--port", "/dev/ttyUSB0", "--mpremote", str(tool)])
    assert rc == 0
    (argv,) = json.loads(record.read_text())
    assert argv[:3] == ["connect", "/dev/ttyUSB0", "exec"]
    script = argv[3]
    assert "'/app.py'" in script and "'/board/esp32.py'" in script  # stale twins removed
    assert "config.json" not in script  # the device stays provisioned
    steps = " ".join(argv[4:]).split(" + ")
    assert steps[0].startswith("+ fs cp ") or argv[4] == "+"
    cps = [s for s in " ".join(argv[4:]).split("+") if s.strip()]
    assert cps[0].strip().startswith("fs cp ") and cps[0].strip().endswith(" :")
    assert "main.py" in cps[0] and "app.mpy" in cps[0]
    assert cps[1].strip().startswith("fs cp -r ") and cps[1].strip().endswith("board :")
    assert cps[-1].strip() == "reset"
    assert "deployed" in capsys.readouterr().out


def test_deploy_can_erase_the_config_and_skip_the_reset(fake_mpremote):
    tool, record = fake_mpremote
    assert (
        main(
            [
                "firmware",
                "deploy",
                "--port",
                "COM3",
                "--mpremote",
                str(tool),
                "--erase-config",
                "--no-reset",
            ]
        )
        == 0
    )
    (argv,) = json.loads(record.read_text())
    assert "/config.json" in argv[3]
    assert "reset" not in argv


def test_deploy_failure_is_reported(fake_mpremote, monkeypatch, capsys):
    tool, _ = fake_mpremote
    monkeypatch.setenv("FAKE_MPREMOTE_RC", "1")
    assert main(["firmware", "deploy", "--port", "/dev/ttyUSB9", "--mpremote", str(tool)]) == 2
    assert "mpremote failed on /dev/ttyUSB9" in capsys.readouterr().err


def test_bad_timing_option_is_a_clear_error(tmp_path, capsys):
    rc = main(
        ["sim-device", "--chip-id", "A4CF12EF5678", "--air", str(tmp_path), "--timing", "bogus=1"]
    )
    assert rc == 2
    assert "unknown timing" in capsys.readouterr().err


class Station:
    """`python main.py ARGS` with its output collected line by line as it comes."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(MAIN), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def out(self) -> str:
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> int:
        self.proc.send_signal(sig)  # SIGINT = Ctrl-C
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"did not stop on signal {sig}:\n{self.out}") from None
        self._reader.join(5)
        return self.proc.returncode


def _micropython_pids(air: Air) -> set[int]:
    """MicroPython processes of this test's air only: other test runs on the same
    machine may have their own devices running."""
    mark = b"ESP32SIM_AIR=" + str(air.root.resolve()).encode()
    pids = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
                if not any(c.endswith(b"micropython") for c in cmd[:2]):
                    continue
                env = (d / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if mark in env:
                pids.add(int(d.name))
    return pids


def test_sim_device_runs_until_ctrl_c(tmp_path):
    air = Air(tmp_path / "air")
    before = _micropython_pids(air)
    st = Station(
        "sim-device",
        "--chip-id",
        "A4CF12EF5678",
        "--air",
        str(air.root),
        "--timing",
        "button_window_ms=0",
        "--log",
        str(tmp_path / "dev.log"),
    )
    try:
        ap = air.wait_for_setup_ap("A4CF12EF5678", 20)
        assert requests.get(ap.api_url + "/api/info", timeout=5).json()["state"] == "setup"
    finally:
        rc = st.stop()
    assert rc == 0, st.out
    assert air.setup_ap("A4CF12EF5678") is None
    assert "boot:" in (tmp_path / "dev.log").read_text()
    wait_for(lambda: not (_micropython_pids(air) - before), 5)


def test_sim_fleet_runs_until_ctrl_c_and_prints_the_aps(tmp_path):
    air = Air(tmp_path / "air")
    before = _micropython_pids(air)
    st = Station(
        "sim",
        "--devices",
        "3",
        "--air",
        str(air.root),
        "--timing",
        "button_window_ms=0",
        "--network",
        "MyHomeWiFi:mypassword",
        "--reach",
        "192.168.29.91:1883=127.0.0.1:1883",
    )
    chips = fleet_chip_ids(3)
    try:
        for chip in chips:
            air.wait_for_setup_ap(chip, 20)
        assert air.home_network("MyHomeWiFi").reach == {"192.168.29.91:1883": "127.0.0.1:1883"}
        # What a person needs for curl: each device's AP and the URL standing for 192.168.4.1.
        for chip in chips:
            line = f"{chip}  setup AP esp32-dht11-Setup-{chip[-6:]}  {air.setup_ap(chip).api_url}"
            wait_for(lambda line=line: line in st.out, 5)
    finally:
        rc = st.stop()
    out = st.out
    assert rc == 0, out
    assert air.setup_aps() == []
    wait_for(lambda: not (_micropython_pids(air) - before), 5)
    assert "mypassword" not in out  # the home password is not echoed


def test_sim_fleet_stops_on_sigterm_too(tmp_path):
    air = Air(tmp_path / "air")
    st = Station("sim", "--devices", "2", "--air", str(air.root), "--timing", "button_window_ms=0")
    try:
        for chip in fleet_chip_ids(2):
            air.wait_for_setup_ap(chip, 20)
    finally:
        rc = st.stop(signal.SIGTERM)
    assert rc == 0, st.out
    assert air.setup_aps() == []


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_reach_without_network_is_refused(tmp_path, capsys):
    assert main(["sim", "--devices", "1", "--air", str(tmp_path), "--reach", "a:1"]) == 2
    assert "--reach needs --network" in capsys.readouterr().err

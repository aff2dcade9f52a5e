"""Verified OTA (docs/OTA.md, "On the device"), steps 1-4, on the real firmware (unix
port, 96 KB heap) against the real station.fleet BundleServer on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import threading
from pathlib import Path

import pytest
from fw_helpers import HOME_PASSWORD, HOME_SSID, SEED_BROKER, provision
from support import wait_for

from station import commands
from station.fleet.bundle import Bundle, make_bundle, make_crashing_bundle
from station.fleet.bundle_server import BundleServer

P = "home/esp32_dht11_001"
ONLINE = lambda p: p == b"online"  # noqa: E731


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Bundle:
    return make_bundle(tmp_path_factory.mktemp("bundles"), version="1.1.0", board="host")


def _serve(air, mqtt_broker, b: Bundle) -> BundleServer:
    server = BundleServer(b).start()
    broker = f"127.0.0.1:{mqtt_broker.port}"
    host, port = server.address
    air.add_home_network(
        HOME_SSID,
        HOME_PASSWORD,
        reach={f"{SEED_BROKER}:1883": broker, broker: broker, f"{host}:{port}": f"{host}:{port}"},
    )
    return server


def _running(device, api, mqtt_broker, observer):
    provision(api, mqtt_broker)
    observer.wait(f"{P}/status", ONLINE)
    observer.wait(f"{P}/state")


def _ota(observer, server: BundleServer, sha256: str | None = None, version: str = "1.1.0"):
    doc = commands.build(
        "ota", url=server.url_of(), sha256=sha256 or server.bundle.digest, version=version
    )
    after = observer.count(f"{P}/event")
    observer.publish(f"{P}/cmd", json.dumps(doc))
    return after


def _ota_events(observer, after: int) -> list[dict]:
    return [e for e in observer.json(f"{P}/event")[after:] if e.get("event") == "ota"]


def _wait_state(observer, after: int, state: str, timeout: float = 30.0) -> dict:
    raw = observer.wait(
        f"{P}/event",
        lambda p: json.loads(p).get("event") == "ota" and json.loads(p).get("state") == state,
        timeout,
        after,
    )
    return json.loads(raw)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_good_bundle_is_downloaded_verified_put_on_trial_and_the_device_reboots(
    home, air, device, api, mqtt_broker, observer, bundle
):
    server = _serve(air, mqtt_broker, bundle)
    try:
        _running(device, api, mqtt_broker, observer)
        after = _ota(observer, server)
        reply = observer.wait(f"{P}/event", lambda p: json.loads(p).get("cmd") == "ota", 5, after)
        assert json.loads(reply) == {"cmd": "ota", "ok": True}
        _wait_state(observer, after, "rebooting")
        seen_info = observer.count(f"{P}/info")
        states = [e["state"] for e in _ota_events(observer, after)]
        assert states == ["downloading", "verifying", "rebooting"]
        assert all(e["version"] == "1.1.0" for e in _ota_events(observer, after))
        flash = air.flash_dir(device.chip_id)
        trial = json.loads((flash / "fw" / "trial").read_text())
        assert trial == {"set": "a", "boots": 0, "version": "1.1.0"}
        assert not (flash / "fw" / "trial.tmp").exists()
        for f in bundle.manifest["files"]:
            assert _sha(flash / "fw" / "a" / f["path"]) == f["sha256"], f["path"]
        # every file fetched once, the manifest too
        assert sum(server.requests.values()) == len(bundle.manifest["files"]) + 1
        # it rebooted into the new set and confirmed it: committed, then info says 1.1.0
        raw = observer.wait(
            f"{P}/info", lambda p: json.loads(p)["firmware"] == "1.1.0", 20, after=seen_info
        )
        assert json.loads(raw)["chip_id"] == device.chip_id
        assert 3 in device.exit_codes
        assert json.loads((flash / "fw" / "active").read_text())["set"] == "a"
        assert not (flash / "fw" / "trial").exists()
        assert "committed" in device.log_text()
        observer.wait(f"{P}/state", after=observer.count(f"{P}/state"), timeout=10)
    finally:
        server.stop()


def test_a_manifest_whose_hash_differs_from_the_command_is_refused(
    home, air, device, api, mqtt_broker, observer, bundle
):
    server = _serve(air, mqtt_broker, bundle)
    try:
        _running(device, api, mqtt_broker, observer)
        lives = len(device.exit_codes)
        after = _ota(observer, server, sha256="0" * 64)
        failed = _wait_state(observer, after, "failed")
        assert failed["reason"] == "manifest hash mismatch"
        assert failed["version"] == "1.1.0"
        flash = air.flash_dir(device.chip_id)
        assert not (flash / "fw" / "trial").exists()
        assert not (flash / "fw" / "a").exists()  # nothing downloaded but the manifest
        assert list(server.requests) == [f"/{bundle.digest}/manifest.json"]
        # still running: it keeps publishing its state
        n = observer.count(f"{P}/state")
        observer.wait(f"{P}/state", after=n, timeout=10)
        assert len(device.exit_codes) == lives  # no reboot
    finally:
        server.stop()


def test_a_file_whose_bytes_differ_from_the_manifest_fails_naming_the_file(
    home, air, device, api, mqtt_broker, observer, bundle, tmp_path
):
    root = tmp_path / "tampered"
    shutil.copytree(bundle.root, root)
    victim = next(f for f in bundle.manifest["files"] if f["path"] == "homemode.mpy")
    data = bytearray((root / victim["path"]).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    (root / victim["path"]).write_bytes(bytes(data))
    server = _serve(air, mqtt_broker, Bundle(root, bundle.manifest))
    try:
        _running(device, api, mqtt_broker, observer)
        lives = len(device.exit_codes)
        after = _ota(observer, server)
        failed = _wait_state(observer, after, "failed")
        assert failed["reason"] == "homemode.mpy: hash mismatch"
        states = [e["state"] for e in _ota_events(observer, after)]
        assert states == ["downloading", "failed"]
        assert not (air.flash_dir(device.chip_id) / "fw" / "trial").exists()
        n = observer.count(f"{P}/state")
        observer.wait(f"{P}/state", after=n, timeout=10)
        assert len(device.exit_codes) == lives  # no reboot
    finally:
        server.stop()


BAD_FIELDS = [
    ("url", "https://127.0.0.1:1/x/manifest.json"),
    ("url", "http://127.0.0.1:1/" + "x" * 300),
    ("sha256", "A" * 64),
    ("sha256", "a" * 63),
    ("version", "1"),
    ("version", "v1.1.0"),
    ("version", 110),
]


def test_bad_fields_are_refused_like_other_commands(home, device, api, mqtt_broker, observer):
    _running(device, api, mqtt_broker, observer)
    good = {
        "cmd": "ota",
        "url": "http://127.0.0.1:1/" + "a" * 64 + "/manifest.json",
        "sha256": "a" * 64,
        "version": "1.1.0",
    }
    for field, value in BAD_FIELDS:
        doc = {**good, field: value}
        with pytest.raises(commands.CommandError):
            commands.check(doc)  # the station refuses it too
        after = observer.count(f"{P}/event")
        observer.publish(f"{P}/cmd", json.dumps(doc))
        reply = json.loads(observer.wait(f"{P}/event", after=after, timeout=5))
        assert reply["cmd"] == "ota" and reply["ok"] is False, (field, value, reply)
        assert reply["error"] == "bad_value" and field in reply["detail"], (field, value, reply)
    commands.check(good)


def test_new_firmware_that_cannot_reach_its_broker_rolls_back(
    home, air, devices, mqtt_broker, observer, bundle
):
    from fw_helpers import api_for

    device = devices(ota_confirm_s=3)
    api = api_for(device)
    server = _serve(air, mqtt_broker, bundle)
    try:
        _running(device, api, mqtt_broker, observer)
        after = _ota(observer, server)
        _wait_state(observer, after, "rebooting")
        # the broker goes out of reach for the new firmware
        host, port = server.address
        air.add_home_network(HOME_SSID, HOME_PASSWORD, reach={f"{host}:{port}": f"{host}:{port}"})
        flash = air.flash_dir(device.chip_id)
        wait_for(lambda: (flash / "fw" / "rollback").exists(), 30, 0.1)
        assert not (flash / "fw" / "trial").exists()
        assert not (flash / "fw" / "active").exists()
        _serve_broker_again(air, mqtt_broker, server)
        rolled = _wait_state(observer, after, "rolled_back", 30)
        assert rolled["reason"] == "new firmware did not reach its broker in 3 s"
        assert rolled["version"] == "1.1.0"
        info = json.loads(observer.last(f"{P}/info") or b"{}")
        assert info["firmware"] == "1.0.0"
        wait_for(lambda: not (flash / "fw" / "rollback").exists(), 5, 0.1)
    finally:
        server.stop()


def _serve_broker_again(air, mqtt_broker, server: BundleServer) -> None:
    broker = f"127.0.0.1:{mqtt_broker.port}"
    host, port = server.address
    air.add_home_network(
        HOME_SSID,
        HOME_PASSWORD,
        reach={f"{SEED_BROKER}:1883": broker, broker: broker, f"{host}:{port}": f"{host}:{port}"},
    )


def test_a_set_that_crashes_at_boot_is_dropped_by_the_device_itself(
    home, air, device, api, mqtt_broker, observer, bundle, tmp_path
):
    # Every hash right, so it is downloaded, verified and booted; its app raises at
    # import, main.py resets (exit 3 here), and fwboot's boot count drops it.
    bad = make_crashing_bundle(tmp_path / "bad", version="1.1.0", board="host")
    server = _serve(air, mqtt_broker, bad)
    try:
        _running(device, api, mqtt_broker, observer)
        lives = device.exit_codes.count(3)
        after = _ota(observer, server)
        _wait_state(observer, after, "rebooting")
        seen_info = observer.count(f"{P}/info")
        rolled = _wait_state(observer, after, "rolled_back", 60)
        assert rolled == {
            "event": "ota",
            "state": "rolled_back",
            "version": "1.1.0",
            "reason": "crashed at boot (2 boots)",
        }
        states = [e["state"] for e in _ota_events(observer, after)]
        assert states == ["downloading", "verifying", "rebooting", "rolled_back"]
        # the old (factory) set runs again, and says so
        infos = [json.loads(p) for p in observer.payloads(f"{P}/info")[seen_info:]]
        assert [i["firmware"] for i in infos] == ["1.0.0"]
        # one reboot into the trial, then one reset per crashed boot
        assert device.exit_codes.count(3) - lives == 1 + 2
        assert device.log_text().count("this firmware crashes at boot") == 2
        flash = air.flash_dir(device.chip_id)
        assert not (flash / "fw" / "trial").exists()
        assert not (flash / "fw" / "active").exists()
        assert not (flash / "fw" / "rollback").exists()  # reported once, then gone
    finally:
        server.stop()
    # and it still takes a good update afterwards, into the same (inactive) set
    server = _serve(air, mqtt_broker, bundle)
    try:
        seen_info = observer.count(f"{P}/info")
        _ota(observer, server)
        raw = observer.wait(
            f"{P}/info", lambda p: json.loads(p)["firmware"] == "1.1.0", 30, after=seen_info
        )
        assert json.loads(raw)["chip_id"] == device.chip_id
        assert json.loads((flash / "fw" / "active").read_text())["set"] == "a"
        for f in bundle.manifest["files"]:
            assert _sha(flash / "fw" / "a" / f["path"]) == f["sha256"], f["path"]
    finally:
        server.stop()


class CuttingProxy:
    """A TCP relay in front of a BundleServer: the first `cuts` answers for `victim` (a
    request path) are cut after `keep` bytes of their body (or one short of the whole
    body), as a WiFi drop mid-file would; every request head is kept as the device
    sent it. strip_range: the Range header is not passed on (a server ignoring it)."""

    def __init__(
        self,
        target: tuple[str, int],
        victim: str,
        keep: int,
        cuts: int = 1,
        strip_range: bool = False,
    ) -> None:
        self.target, self.victim, self.keep = target, victim, keep
        self.cuts, self.strip_range = cuts, strip_range
        self.heads: list[str] = []
        self.cut_at: int | None = None  # body bytes the last cut answer passed
        self._sock = socket.create_server(("127.0.0.1", 0))
        host, port = self._sock.getsockname()[:2]
        self.address = f"{host}:{port}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        with conn, socket.create_connection(self.target) as up:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(1024)
                if not chunk:
                    return
                head += chunk
            self.heads.append(head.decode())
            mine = head.split(b" ")[1] == self.victim.encode()
            if self.strip_range:
                head = b"".join(x for x in head.splitlines(True) if not x.startswith(b"Range:"))
            up.sendall(head)
            cut = mine and self.cuts > 0
            if cut:
                self.cuts -= 1
            answer = b""
            while data := up.recv(4096):
                if not cut:
                    conn.sendall(data)
                    continue
                answer += data
                end = answer.find(b"\r\n\r\n")
                if end < 0:
                    continue
                # keep bytes at most, and never the whole body (a resumed answer is shorter)
                length = int(re.search(rb"Content-Length: (\d+)", answer[:end]).group(1))
                passed = min(self.keep, length - 1)
                if len(answer) - (end + 4) >= passed:
                    conn.sendall(answer[: end + 4 + passed])
                    self.cut_at = passed
                    return  # both closed: the device's connection ends early

    def close(self) -> None:
        self._sock.close()


VICTIM = "homemode.mpy"


def _behind_proxy(air, mqtt_broker, bundle: Bundle, **cutting) -> tuple:
    """(server, proxy, the victim's manifest entry, its request path): the bundle served
    where the device reaches it only through a CuttingProxy."""
    server = BundleServer(bundle).start()
    victim = next(f for f in bundle.manifest["files"] if f["path"] == VICTIM)
    path = f"/{bundle.digest}/{VICTIM}"
    proxy = CuttingProxy(server.address, path, keep=victim["size"] // 2, **cutting)
    broker = f"127.0.0.1:{mqtt_broker.port}"
    host, port = server.address
    air.add_home_network(
        HOME_SSID,
        HOME_PASSWORD,
        reach={f"{SEED_BROKER}:1883": broker, broker: broker, f"{host}:{port}": proxy.address},
    )
    return server, proxy, victim, path


def test_a_download_cut_mid_file_resumes_where_it_stopped(
    home, air, device, api, mqtt_broker, observer, bundle
):
    server, proxy, victim, path = _behind_proxy(air, mqtt_broker, bundle)
    try:
        _running(device, api, mqtt_broker, observer)
        seen_info = observer.count(f"{P}/info")
        after = _ota(observer, server)
        raw = observer.wait(
            f"{P}/info", lambda p: json.loads(p)["firmware"] == "1.1.0", 30, after=seen_info
        )
        assert json.loads(raw)["chip_id"] == device.chip_id
        assert proxy.cut_at == victim["size"] // 2
        asked = [h for h in proxy.heads if h.startswith(f"GET {path} ")]
        assert len(asked) == 2, asked
        assert "Range" not in asked[0]
        assert f"\r\nRange: bytes={proxy.cut_at}-\r\n" in asked[1]  # from the bytes it had
        assert server.requests[path] == 2  # the whole file once (cut on the way), the rest once
        states = [e["state"] for e in _ota_events(observer, after)]
        assert states == ["downloading", "verifying", "rebooting"]
        assert f"ota: resuming {VICTIM} at {proxy.cut_at}" in device.log_text()
        flash = air.flash_dir(device.chip_id)
        assert json.loads((flash / "fw" / "active").read_text())["set"] == "a"
        assert _sha(flash / "fw" / "a" / victim["path"]) == victim["sha256"]
    finally:
        proxy.close()
        server.stop()


def test_a_server_that_ignores_range_gets_the_file_fetched_again_from_the_start(
    home, air, device, api, mqtt_broker, observer, bundle
):
    server, proxy, victim, path = _behind_proxy(air, mqtt_broker, bundle, strip_range=True)
    try:
        _running(device, api, mqtt_broker, observer)
        seen_info = observer.count(f"{P}/info")
        _ota(observer, server)
        observer.wait(
            f"{P}/info", lambda p: json.loads(p)["firmware"] == "1.1.0", 30, after=seen_info
        )
        asked = [h for h in proxy.heads if h.startswith(f"GET {path} ")]
        assert len(asked) == 2 and "\r\nRange: bytes=" in asked[1], asked
        assert server.requests[path] == 2  # both answered 200: the whole file twice
        flash = air.flash_dir(device.chip_id)
        assert _sha(flash / "fw" / "a" / VICTIM) == victim["sha256"]
    finally:
        proxy.close()
        server.stop()


def test_a_download_cut_again_and_again_fails_naming_the_file(
    home, air, device, api, mqtt_broker, observer, bundle
):
    server, proxy, _victim, path = _behind_proxy(air, mqtt_broker, bundle, cuts=100)
    try:
        _running(device, api, mqtt_broker, observer)
        lives = len(device.exit_codes)
        after = _ota(observer, server)
        failed = _wait_state(observer, after, "failed")
        assert failed["reason"] == f"{VICTIM}: download cut 6 times (connection closed early)"
        assert len([h for h in proxy.heads if h.startswith(f"GET {path} ")]) == 6
        assert not (air.flash_dir(device.chip_id) / "fw" / "trial").exists()
        n = observer.count(f"{P}/state")
        observer.wait(f"{P}/state", after=n, timeout=10)
        assert len(device.exit_codes) == lives  # no reboot
    finally:
        proxy.close()
        server.stop()

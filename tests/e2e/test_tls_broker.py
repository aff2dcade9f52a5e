"""mqtts:// end to end, as a user runs it: `station provision --demo N --broker
mqtts://… --ca FILE` against a real Mosquitto 2.0.11 whose only listener speaks TLS
(a throwaway CA, tests/tls_ca.py). The station checks the broker with the CA, gives the
CA to every device (/api/mqtt `tls`, `ca`), and the devices (real firmware on the
MicroPython unix port) come online there over TLS."""

from __future__ import annotations

import json

import pytest
from mosquitto import Mosquitto
from support import run_station as station
from tls_ca import TestCA

pytestmark = pytest.mark.timeout(240)
ADMIN = ("admin", "admin-secret")


def test_a_demo_batch_comes_online_on_a_tls_only_mosquitto(tmp_path):
    ca = TestCA(tmp_path / "ca")
    with Mosquitto(tmp_path / "mosquitto", dynsec_admin=ADMIN, tls=ca.issue("broker")) as mosq:
        url = f"mqtts://{ADMIN[0]}:{ADMIN[1]}@127.0.0.1:{mosq.port}"
        proc = station(tmp_path, "provision", "--demo", "2", "--broker", url, "--ca", str(ca.path))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert f"Broker: mqtts://127.0.0.1:{mosq.port}" in proc.stdout
        assert "2 of 2 devices online" in proc.stdout
        assert ADMIN[1] not in proc.stdout + proc.stderr
        log = mosq.log_path.read_text()
    # The listener speaks TLS only: a device in the log came over TLS.
    for n in (1, 2):
        assert f"as esp32_dht11_00{n} " in log
    dynsec = json.loads((mosq.workdir / "dynsec.json").read_text())
    assert {c["username"] for c in dynsec["clients"]} >= {"esp32_dht11_001", "esp32_dht11_002"}


def test_a_ca_that_did_not_sign_the_broker_stops_the_batch_before_any_device(tmp_path):
    ca = TestCA(tmp_path / "ca")
    other = TestCA(tmp_path / "other", name="Someone else's CA")
    with Mosquitto(tmp_path / "mosquitto", dynsec_admin=ADMIN, tls=ca.issue("broker")) as mosq:
        url = f"mqtts://{ADMIN[0]}:{ADMIN[1]}@127.0.0.1:{mosq.port}"
        proc = station(
            tmp_path, "provision", "--demo", "1", "--broker", url, "--ca", str(other.path)
        )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "its broker cannot take devices, so nothing was configured" in proc.stderr
    assert "does not trust" in proc.stderr
    assert "registering" not in proc.stdout and "Traceback" not in proc.stderr


def test_a_tls_broker_without_a_ca_is_refused_with_the_option_to_give(tmp_path):
    ca = TestCA(tmp_path / "ca")
    with Mosquitto(tmp_path / "mosquitto", dynsec_admin=ADMIN, tls=ca.issue("broker")) as mosq:
        url = f"mqtts://{ADMIN[0]}:{ADMIN[1]}@127.0.0.1:{mosq.port}"
        proc = station(tmp_path, "provision", "--demo", "1", "--broker", url)
    assert proc.returncode == 2
    assert "give the CA certificate (--ca FILE)" in proc.stderr
    assert "Traceback" not in proc.stderr

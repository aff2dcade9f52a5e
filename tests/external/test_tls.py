"""mqtts:// between the station and a real Mosquitto 2.0.11 whose listener speaks TLS
only (a throwaway CA, tests/tls_ca.py): the station's admin connection, its own client
and the follower verify the broker with the home's CA; a broker the CA did not sign, a
plain port and a TLS home without a CA are refused before a batch starts, each in
words that say what to fix."""

from __future__ import annotations

from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from mosquitto import Mosquitto
from support import wait_for
from tls_ca import TestCA

from station.broker_target import parse
from station.dynsec import DynSecError
from station.external_broker import ExternalBroker
from station.registry import Registry

ADMIN = ("admin", "admin-pw")


@pytest.fixture
def ca(tmp_path) -> TestCA:
    return TestCA(tmp_path / "ca")


@pytest.fixture
def tls_mosq(tmp_path, ca) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "mosquitto", dynsec_admin=ADMIN, tls=ca.issue("broker")) as m:
        yield m


@pytest.fixture
def registry(tmp_path) -> Iterator[Registry]:
    reg = Registry(str(tmp_path / "r.db"))
    yield reg
    reg.close()


def external(registry: Registry, port: int, ca: str | None, scheme: str = "mqtts"):
    target = parse(f"{scheme}://127.0.0.1:{port}")
    assert target is not None
    return ExternalBroker(
        registry, target, ADMIN, ca=ca, reading_min_interval_s=0, flush_interval_s=0.01
    )


def test_the_station_follows_devices_on_a_tls_broker_verified_by_the_homes_ca(
    registry, tls_mosq, ca
):
    ext = external(registry, tls_mosq.port, ca.pem)
    ext.start()
    try:
        assert ext.device_ca == ca.pem  # what every device of the home is given
        device = registry.register_device()
        ext.device_registered(device.device, device.token)
        # The device's login (made over TLS by dynamic security) works over TLS.
        got: dict[str, object] = {}
        dev = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device.device.node_name)
        dev.username_pw_set(device.device.node_name, device.token)
        dev.tls_set(ca_certs=str(ca.path))
        dev.on_connect = lambda _c, _u, _f, rc, _p: got.setdefault("rc", rc)
        dev.connect("127.0.0.1", tls_mosq.port)
        dev.loop_start()
        try:
            wait_for(lambda: "rc" in got, 5)
            assert not got["rc"].is_failure, got["rc"]
            prefix = device.device.topic_prefix
            dev.publish(f"{prefix}/status", "online", qos=1, retain=True).wait_for_publish(5)
            # The station's follower (its own TLS client) saw it: the registry says online.
            wait_for(lambda: registry.device(device.device.node_name).online, 10)
        finally:
            dev.disconnect()
            dev.loop_stop()
    finally:
        ext.stop()


def test_a_broker_certificate_the_homes_ca_did_not_sign_is_refused(tmp_path, registry, tls_mosq):
    other = TestCA(tmp_path / "other-ca", name="Someone else's CA")
    ext = external(registry, tls_mosq.port, other.pem)
    with pytest.raises(DynSecError) as err:
        ext.start()
    text = str(err.value)
    assert "has a certificate the station does not trust" in text
    assert "give the CA that signed it (--ca FILE)" in text


def test_a_certificate_for_another_host_is_refused(tmp_path, registry, ca):
    cert = ca.issue("elsewhere", hosts=("broker.example.com",))
    with Mosquitto(tmp_path / "m2", dynsec_admin=ADMIN, tls=cert) as m:
        ext = external(registry, m.port, ca.pem)
        with pytest.raises(DynSecError) as err:
            ext.start()
    assert "does not trust" in str(err.value)
    assert "127.0.0.1" in str(err.value)  # the name it was expected to hold


def test_mqtts_to_a_plain_port_says_it_is_not_tls(tmp_path, registry, ca):
    with Mosquitto(tmp_path / "plain", dynsec_admin=ADMIN) as plain:
        ext = external(registry, plain.port, ca.pem)
        with pytest.raises(DynSecError) as err:
            ext.start()
    assert "is it an mqtts:// (TLS) port?" in str(err.value)


def test_a_tls_broker_without_a_ca_cannot_take_devices(registry, tls_mosq):
    """Devices have no CA store: without the CA they could not check the broker, so the
    batch must not start (and nothing connects)."""
    ext = external(registry, tls_mosq.port, None)
    with pytest.raises(DynSecError) as err:
        ext.start()
    assert "give the CA certificate (--ca FILE)" in str(err.value)
    # (The fixture's readiness probe is a bare TCP connect: Mosquitto logs it as a
    # failed TLS connection, never as "New connection".)
    assert "New connection" not in tls_mosq.log_path.read_text()


def test_two_processes_of_one_station_share_its_login_on_the_broker(
    registry, tls_mosq, ca, memory_keyring
):
    """The window and a CLI batch of one station each start a follower: the station
    client's password is kept in the keyring, so the second start does not change it
    under the first (whose reconnects would then be refused)."""
    from station.secrets import SecretStore

    target = parse(f"mqtts://127.0.0.1:{tls_mosq.port}")
    assert target is not None
    first, second = (
        ExternalBroker(registry, target, ADMIN, ca=ca.pem, secrets_store=SecretStore())
        for _ in range(2)
    )
    first.start()
    try:
        second.start()
        try:
            assert first.connected and second.connected
            # A new connection with the first's password (what its reconnect sends).
            got: dict[str, object] = {}
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="reconnect-check")
            c.username_pw_set(first.client_name, first._password)
            c.tls_set(ca_certs=str(ca.path))
            c.on_connect = lambda _c, _u, _f, rc, _p: got.setdefault("rc", rc)
            c.connect("127.0.0.1", tls_mosq.port)
            c.loop_start()
            try:
                wait_for(lambda: "rc" in got, 5)
                assert not got["rc"].is_failure, got["rc"]
            finally:
                c.disconnect()
                c.loop_stop()
        finally:
            second.stop()
    finally:
        first.stop()


def test_a_stale_kept_password_is_replaced_once_the_broker_refuses_it(
    registry, tls_mosq, ca, memory_keyring
):
    from station.external_broker import station_client_name
    from station.secrets import SecretStore

    target = parse(f"mqtts://127.0.0.1:{tls_mosq.port}")
    assert target is not None
    store = SecretStore()
    first = ExternalBroker(registry, target, ADMIN, ca=ca.pem, secrets_store=store)
    first.start()
    first.stop()
    # The keyring's entry is older than the broker's (a restored keyring, another laptop).
    key = f"station-client:{target.url}"
    store.set_broker_login(key, station_client_name(), "an-old-password")
    again = ExternalBroker(registry, target, ADMIN, ca=ca.pem, secrets_store=store)
    again.start()
    try:
        assert again.connected
        assert store.broker_login(key) == (station_client_name(), again._password)
        assert again._password != "an-old-password"
    finally:
        again.stop()

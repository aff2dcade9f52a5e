"""Per-device logins on a real Mosquitto 2.0.11 with its dynamic-security plugin
(station/dynsec.py), checked by logging in as the devices would."""

from __future__ import annotations

import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from mosquitto import Mosquitto
from support import free_port, wait_for

from station.dynsec import AdminLogin, DynSec, DynSecError

PREFIX_A, PREFIX_B = "home/esp32_dht11_001", "home/esp32_dht11_002"


@pytest.fixture
def mosq(tmp_path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "mosquitto", dynsec_admin=("admin", "admin-pw")) as m:
        yield m


@pytest.fixture
def dynsec(mosq) -> Iterator[DynSec]:
    with DynSec(AdminLogin("127.0.0.1", mosq.port, "admin", "admin-pw")) as ds:
        ds.check()
        yield ds


class Peer:
    def __init__(self, port: int, client_id: str, username: str, password: str) -> None:
        self.rc = None
        self.messages: list[tuple[str, bytes]] = []
        self.gone = False
        self.m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.m.username_pw_set(username, password)
        self.m.on_connect = self._on_connect
        self.m.on_message = lambda _c, _u, msg: self.messages.append((msg.topic, msg.payload))
        self.m.on_disconnect = lambda *_a: setattr(self, "gone", True)
        self.m.connect("127.0.0.1", port, keepalive=30)
        self.m.loop_start()
        wait_for(lambda: self.rc is not None, 5)

    def _on_connect(self, c, _u, _f, rc, _p) -> None:
        self.rc = rc
        if rc.is_failure:
            c.disconnect()

    @property
    def ok(self) -> bool:
        return self.rc is not None and not self.rc.is_failure

    def close(self) -> None:
        self.m.disconnect()
        self.m.loop_stop()


def test_a_device_logs_in_with_its_token_and_pinned_client_id(mosq, dynsec):
    dynsec.add_device("esp32_dht11_001", "token-1", PREFIX_A)
    good = Peer(mosq.port, "esp32_dht11_001", "esp32_dht11_001", "token-1")
    wrong_id = Peer(mosq.port, "someone-else", "esp32_dht11_001", "token-1")
    wrong_token = Peer(mosq.port, "esp32_dht11_001", "esp32_dht11_001", "token-2")
    try:
        assert good.ok
        assert not wrong_id.ok and not wrong_token.ok
    finally:
        for p in (good, wrong_id, wrong_token):
            p.close()


def test_a_cross_device_publish_is_refused_and_own_topics_flow(mosq, dynsec):
    dynsec.add_device("esp32_dht11_001", "token-a", PREFIX_A)
    dynsec.add_device("esp32_dht11_002", "token-b", PREFIX_B)
    password = dynsec.station_client("esp32-station-test", "home")
    station = Peer(mosq.port, "station-follower", "esp32-station-test", password)
    a = Peer(mosq.port, "esp32_dht11_001", "esp32_dht11_001", "token-a")
    b = Peer(mosq.port, "esp32_dht11_002", "esp32_dht11_002", "token-b")
    try:
        assert station.ok and a.ok and b.ok
        station.m.subscribe([("home/#", 1), ("homeassistant/#", 1)])
        b.m.subscribe(f"{PREFIX_B}/cmd", 1)
        a.m.subscribe(f"{PREFIX_B}/#", 1)  # another device's topics: refused
        time.sleep(0.3)
        a.m.publish(f"{PREFIX_B}/cmd", '{"cmd":"reboot"}', qos=1)  # dropped by the ACL
        a.m.publish(f"{PREFIX_B}/state", '{"temperature":99}', qos=1)
        a.m.publish("homeassistant/sensor/esp32_dht11_002_temperature/config", "{}", qos=1)
        a.m.publish("homeassistant/sensor/esp32_dht11_001_temperature/config", "{}", qos=1)
        a.m.publish(f"{PREFIX_A}/state", '{"temperature":21}', qos=1)
        wait_for(lambda: (f"{PREFIX_A}/state", b'{"temperature":21}') in station.messages, 5)
        # The station's own client may command a device.
        station.m.publish(f"{PREFIX_B}/cmd", '{"cmd":"identify"}', qos=1)
        wait_for(lambda: b.messages == [(f"{PREFIX_B}/cmd", b'{"cmd":"identify"}')], 5)
        topics = [t for t, _ in station.messages]
        assert f"{PREFIX_B}/state" not in topics
        assert "homeassistant/sensor/esp32_dht11_002_temperature/config" not in topics
        assert "homeassistant/sensor/esp32_dht11_001_temperature/config" in topics
        assert [t for t, _ in a.messages] == []
    finally:
        for p in (station, a, b):
            p.close()


def test_removing_a_device_kicks_it_and_refuses_it(mosq, dynsec):
    dynsec.add_device("esp32_dht11_001", "token-1", PREFIX_A)
    live = Peer(mosq.port, "esp32_dht11_001", "esp32_dht11_001", "token-1")
    assert live.ok
    live.m.reconnect_delay_set(30, 60)  # no quick automatic comeback
    dynsec.remove_device("esp32_dht11_001")
    wait_for(lambda: live.gone, 5)
    live.close()
    again = Peer(mosq.port, "esp32_dht11_001", "esp32_dht11_001", "token-1")
    assert not again.ok
    again.close()
    dynsec.remove_device("esp32_dht11_001")  # removing what is gone is fine


def test_re_adding_a_device_replaces_its_token(mosq, dynsec):
    dynsec.add_device("esp32_dht11_001", "old-token", PREFIX_A)
    dynsec.add_device("esp32_dht11_001", "new-token", PREFIX_A)
    old = Peer(mosq.port, "esp32_dht11_001", "esp32_dht11_001", "old-token")
    new = Peer(mosq.port, "esp32_dht11_001", "esp32_dht11_001", "new-token")
    try:
        assert not old.ok and new.ok
    finally:
        old.close()
        new.close()


def test_the_station_client_gets_a_fresh_password_each_run(mosq, dynsec):
    first = dynsec.station_client("esp32-station-test", "home")
    second = dynsec.station_client("esp32-station-test", "home")
    assert first != second
    stale = Peer(mosq.port, "s1", "esp32-station-test", first)
    fresh = Peer(mosq.port, "s2", "esp32-station-test", second)
    try:
        assert not stale.ok and fresh.ok
    finally:
        stale.close()
        fresh.close()


def test_the_plugins_own_error_is_raised(dynsec):
    dynsec.run({"command": "createRole", "rolename": "r"})
    with pytest.raises(DynSecError, match="refused createRole: Role already exists"):
        dynsec.run({"command": "createRole", "rolename": "r"})


def test_a_wrong_admin_password_is_a_clear_error(mosq):
    with pytest.raises(DynSecError, match="refused the admin login 'admin'"):
        DynSec(AdminLogin("127.0.0.1", mosq.port, "admin", "nope")).open()


def test_a_broker_without_the_plugin_is_a_clear_error(tmp_path):
    with Mosquitto(tmp_path / "plain", users={"admin": "pw"}) as plain:
        ds = DynSec(AdminLogin("127.0.0.1", plain.port, "admin", "pw"), timeout=1.5).open()
        try:
            with pytest.raises(DynSecError, match="dynamic-security plugin loaded"):
                ds.check()
        finally:
            ds.close()


def test_an_unreachable_broker_is_a_clear_error():
    with pytest.raises(DynSecError, match=r"cannot reach the MQTT broker at 127\.0\.0\.1"):
        DynSec(AdminLogin("127.0.0.1", free_port(), "admin", "pw")).open()


def test_dynamic_security_answers_again_after_the_broker_restarts(tmp_path, mosq):
    """paho reconnects by itself; the answers' subscription is made again with it
    (a clean session lost it, and every command then timed out)."""
    ds = DynSec(AdminLogin("127.0.0.1", mosq.port, "admin", "admin-pw"), timeout=3)
    ds.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
    with ds:
        ds.check()
        port = mosq.port
        mosq.stop()
        ds._connected.clear()
        with Mosquitto(tmp_path / "again", dynsec_admin=("admin", "admin-pw"), port=port):
            wait_for(lambda: ds._connected.is_set() and ds.client.is_connected(), 10)
            time.sleep(0.3)  # the SUBACK
            ds.check()  # answered: no DynSecError (timeout)

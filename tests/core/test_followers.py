"""station.followers without Qt, against a real Mosquitto 2.0.11 with its dynamic-security
plugin: one follower per home broker URL, its devices' updates to every listener, homes
added, edited and removed while it runs, a broker that is not there yet (retried), one
that goes away and comes back, commands routed to the broker a device reports to, and
the demo's simulated LAN taught to reach a home's broker."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from mosquitto import Mosquitto
from support import wait_for

from station import followers as followers_mod
from station.broker_target import parse
from station.errors import StationError
from station.followers import Followers, demo_reach
from station.registry import Registry
from station.secrets import SecretStore

pytestmark = pytest.mark.timeout(120)
ADMIN = ("admin", "followers-admin-pw")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mosq(tmp_path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "mosquitto", dynsec_admin=ADMIN) as m:
        yield m


@pytest.fixture
def registry(tmp_path) -> Iterator[Registry]:
    reg = Registry(str(tmp_path / "registry.sqlite3"))
    yield reg
    reg.close()


@pytest.fixture
def store(memory_keyring) -> SecretStore:
    return SecretStore()


@pytest.fixture
def follow(registry, store) -> Iterator[Followers]:
    f = Followers(registry, store, reading_min_interval_s=0, retry_s=0.2, lost_s=1.0)
    yield f
    f.stop()


def _home(registry, store, name: str, port: int, login=ADMIN):
    url = f"mqtt://127.0.0.1:{port}"
    target = parse(url)
    store.set_broker_login(target.key, *login)
    return registry.add_home(name, f"{name}WiFi", broker_url=url)


def test_follows_each_home_broker_and_feeds_every_listener(registry, store, follow, mosq):
    home = _home(registry, store, "Smith", mosq.port)
    updates: list = []
    follow.add_listener(updates.append)
    follow.start()
    assert follow.check(home) == (
        f"Broker {home.broker_url}: reachable, admin login and dynamic security work."
    )
    [state] = follow.states()
    assert state.ok and state.homes == ("Smith",) and state.url == home.broker_url
    ext = follow.follower(home.broker_url)
    assert ext is not None
    # A device of the home, its login made there, online there: the listener hears it
    # and the registry follows it (the embedded tracker's effects).
    issued = registry.register_device(home=home)
    ext.device_registered(issued.device, issued.token)
    node, prefix = issued.device.node_name, issued.device.topic_prefix
    dev = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=node)
    dev.username_pw_set(node, issued.token)
    dev.will_set(f"{prefix}/status", "offline", qos=1, retain=True)
    dev.connect("127.0.0.1", mosq.port)
    dev.loop_start()
    try:
        wait_for(dev.is_connected, 10)
        dev.publish(f"{prefix}/status", "online", qos=1, retain=True).wait_for_publish(5)
        reading = {"temperature": 21.5, "humidity": 40.0}
        dev.publish(f"{prefix}/state", json.dumps(reading), qos=1).wait_for_publish(5)
        wait_for(lambda: {u.kind for u in updates if u.node_name == node} >= {"online"}, 10)
        wait_for(lambda: (registry.device(node).last_state or {}).get("temperature"), 10)
        assert registry.device(node).online
        # A command for that device goes through its home's broker.
        got: list[bytes] = []
        dev.on_message = lambda _c, _u, msg: got.append(msg.payload)
        dev.subscribe(f"{prefix}/cmd", 1)
        device = registry.device(node)
        broker = follow.broker_for(device, embedded="the embedded broker")
        assert broker is ext
        wait_for(lambda: dev.is_connected(), 5)
        threading.Event().wait(0.3)  # the SUBACK
        broker.send_command(device, {"cmd": "identify"})
        wait_for(lambda: got, 10)
        assert json.loads(got[0]) == {"cmd": "identify"}
    finally:
        dev.disconnect()
        dev.loop_stop()
    # A device of an embedded home is the embedded broker's.
    plain = registry.add_home("Jones", "JonesWiFi")
    other = registry.register_device(home=plain).device
    assert follow.broker_for(other, embedded="the embedded broker") == "the embedded broker"


def test_homes_added_edited_and_removed_while_running(registry, store, follow, mosq, tmp_path):
    follow.start()
    assert follow.wait(follow.sync())
    assert follow.states() == []
    a = _home(registry, store, "A", mosq.port)
    b = _home(registry, store, "B", mosq.port)  # the same broker: one follower
    assert follow.check(b).startswith("Broker ")
    [state] = follow.states()
    assert state.homes == ("A", "B") and state.ok
    first = follow.follower(a.broker_url)
    # A to another broker; B stays: still one follower for the first, one for the other.
    with Mosquitto(tmp_path / "second", dynsec_admin=ADMIN) as second:
        target = parse(f"mqtt://127.0.0.1:{second.port}")
        store.set_broker_login(target.key, *ADMIN)
        a = registry.edit_home(a, broker_url=target.url)
        assert follow.check(a).startswith(f"Broker {target.url}: reachable")
        assert sorted(s.url for s in follow.states()) == sorted([b.broker_url, target.url])
        assert follow.follower(b.broker_url) is first  # not restarted: nothing changed
        # Both back to the embedded broker, then removed: nothing is followed.
        registry.edit_home(a, broker_url=None)
        b.delete_instance()
        assert follow.wait(follow.sync())
        assert follow.states() == []
        assert follow.check(registry.home("A")) == (
            "Devices report to this station's embedded broker."
        )


def test_a_broker_not_there_yet_is_a_warning_then_followed_once_it_is(
    registry, store, follow, tmp_path
):
    port = _free_port()
    home = _home(registry, store, "Later", port)
    follow.start()
    text = follow.check(home, timeout=10)
    assert text.startswith("Warning: home 'Later': its broker cannot take devices")
    assert "Connection refused" in text and ADMIN[1] not in text
    with pytest.raises(StationError, match="cannot take devices now, so nothing was configured"):
        follow.route(home, timeout=5)
    state = follow.state(home.broker_url)
    assert not state.ok and state.state == "unreachable" and state.attempts >= 1
    assert "retrying in" in state.summary()
    with Mosquitto(tmp_path / "mosquitto", dynsec_admin=ADMIN, port=port):
        wait_for(lambda: follow.state(home.broker_url).ok, 20)
        route = follow.route(home)
        assert (route.host, route.port, route.ca) == ("127.0.0.1", port, None)
        assert route.broker is follow.follower(home.broker_url)


class KeptMosquitto(Mosquitto):
    """A Mosquitto whose restart keeps its dynamic-security file (clients and roles), as
    a real one does; tests/mosquitto.py's starts from a fresh one each time."""

    def _dynsec_lines(self, admin: str, password: str) -> list[str]:
        config = self.workdir / "dynsec.json"
        kept = config.read_bytes() if config.exists() else None
        lines = super()._dynsec_lines(admin, password)
        if kept is not None:
            config.write_bytes(kept)
        return lines


@pytest.mark.parametrize(
    ("lost_s", "keep"),
    [(1.0, False), (60.0, True)],
    ids=["forgotten-so-restarted", "kept-so-reconnected"],
)
def test_a_broker_that_goes_away_comes_back_and_is_followed_again(
    registry, store, tmp_path, lost_s, keep
):
    """Restarted with its logins kept, paho reconnects the follower by itself (and a
    batch finds dynamic security answering: the admin connection is made afresh when
    its reconnected one gets no answers); restarted without them, the follower is
    started afresh once its connection stays lost for LOST_S."""
    follow = Followers(registry, store, reading_min_interval_s=0, retry_s=0.2, lost_s=lost_s)
    mosq = (KeptMosquitto if keep else Mosquitto)(tmp_path / "m", dynsec_admin=ADMIN).start()
    request_stop = mosq.stop
    home = _home(registry, store, "Smith", mosq.port)
    follow.start()
    assert follow.check(home).startswith("Broker ")
    mosq.stop()
    wait_for(lambda: not follow.state(home.broker_url).ok, 15)
    device = registry.register_device(home=home).device
    with pytest.raises(StationError, match="which the station is not connected to now"):
        follow.broker_for(device, embedded=None)
    mosq.start()  # the same port and dynamic-security file
    wait_for(lambda: follow.state(home.broker_url).ok, 30)
    assert follow.broker_for(device, embedded=None) is follow.follower(home.broker_url)
    # A batch may start there again: dynamic security answers (the follower's admin
    # connection is made afresh if the reconnected one gets no answers).
    try:
        route = follow.route(home)
        assert route.broker is follow.follower(home.broker_url)
        route.broker.dynsec.check()
    finally:
        follow.stop()
        request_stop()


def test_no_admin_login_says_how_to_give_it(registry, store, follow, mosq):
    home = registry.add_home("Nologin", "W", broker_url=f"mqtt://127.0.0.1:{mosq.port}")
    follow.start()
    text = follow.check(home, timeout=10)
    assert "no admin login for the broker" in text
    assert text.endswith("Batches for this home will not start until it can.")


def test_a_refused_admin_login_is_retried_with_a_new_one(registry, store, follow, mosq):
    home = _home(registry, store, "Smith", mosq.port, login=("admin", "wrong"))
    follow.start()
    text = follow.check(home, timeout=10)
    assert "refused the admin login 'admin'" in text and "wrong" not in text
    store.set_broker_login(parse(home.broker_url).key, *ADMIN)  # the dialog saved a new one
    assert follow.check(home).startswith("Broker ")


def test_stop_ends_every_follower_thread(registry, store, mosq):
    f = Followers(registry, store, retry_s=0.2)
    _home(registry, store, "Smith", mosq.port)
    _home(registry, store, "Gone", _free_port())
    f.start()
    wait_for(lambda: len(f.states()) == 2 and all(s.attempts for s in f.states()), 15)
    f.stop()
    names = [t.name for t in threading.enumerate()]
    assert not [n for n in names if n.startswith("follow")], names
    assert followers_mod.RETRY_S == 10.0  # the default a station runs with


def test_the_demo_lan_learns_to_reach_the_home_broker(tmp_path):
    from station.sim.air import Air

    class Demo:  # the part of station.sim.demo.DemoWorld demo_reach uses
        air = Air(tmp_path / "air")
        home_ssid = "DemoHomeWiFi"
        broker_address = ("192.168.29.91", 1883)

    Demo.air.add_home_network(
        "DemoHomeWiFi",
        "demo-home-pass",
        reach={"192.168.29.91:1883": "127.0.0.1:41883"},
        laptop=["192.168.29.91:1883"],
    )
    before = Demo.air.home_network("DemoHomeWiFi")
    demo_reach(Demo, parse("mqtt://127.0.0.1:18830"))  # type: ignore[arg-type]
    after = Demo.air.home_network("DemoHomeWiFi")
    assert after.reach == {**before.reach, "127.0.0.1:18830": "127.0.0.1:18830"}
    assert (after.password, after.bssid, after.ip_prefix) == (
        before.password,
        before.bssid,
        before.ip_prefix,
    )
    laptop = json.loads(next((tmp_path / "air" / "networks").glob("*.json")).read_text())
    assert laptop["laptop"] == ["192.168.29.91:1883"]  # the station's broker still is

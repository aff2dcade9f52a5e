"""Re-homing a home's devices (issue 11 part 2, docs/FLEET.md) on a demo station: real
firmware on the unix port, the real embedded broker, a real Mosquitto 2.0 with its
dynamic-security plugin as the customer's permanent broker. No device is visited: each
is told the new broker over MQTT, and counts as moved only when it reports from there."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest
from mosquitto import Mosquitto
from support import wait_for

from station.errors import StationError
from station.fleet.rehome import BrokerMove
from station.fleet.rollout import Phase
from station.runtime import StationRuntime

pytestmark = pytest.mark.timeout(240)
ADMIN = ("admin", "admin-secret")  # the mosq fixture's dynamic-security admin (conftest.py)


def _url(mosq: Mosquitto) -> str:
    return f"mqtt://{ADMIN[0]}:{ADMIN[1]}@127.0.0.1:{mosq.port}"


def _stored(rt: StationRuntime) -> dict[str, dict]:
    """Each simulated device's stored MQTT settings (its flash), by node name."""
    assert rt.demo is not None
    out = {}
    for sim in rt.demo.fleet.devices:
        mqtt_cfg = (sim.config() or {})["mqtt"]
        out[mqtt_cfg["node_name"]] = mqtt_cfg
    return out


def _login_accepted(port: int, username: str, password: str) -> bool:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv311)
    c.username_pw_set(username, password)
    result: list[bool] = []
    c.on_connect = lambda _c, _u, _f, rc, _p=None: result.append(not rc.is_failure)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        wait_for(lambda: bool(result), 10)
    finally:
        c.disconnect()
        c.loop_stop()
    return result[0]


def test_a_home_moves_to_mosquitto_and_back_without_a_visit(site, mosq):
    home = site.registry.homes()[0]
    nodes = sorted(_stored(site))
    # 1. embedded -> the customer's Mosquitto
    with BrokerMove(site, home.name, _url(mosq)) as move:
        assert move.address == f"127.0.0.1:{mosq.port}"
        result = move.run()
    assert result.ok, [(d.node, d.phase, d.reason) for d in result.devices]
    assert [d.phase for d in result.devices] == [Phase.CONFIRMED, Phase.CONFIRMED]
    assert move.home_moved
    assert site.registry.home(home.id).broker_url == f"mqtt://127.0.0.1:{mosq.port}"
    stored = _stored(site)
    assert {n: (c["broker"], c["port"]) for n, c in stored.items()} == {
        n: ("127.0.0.1", mosq.port) for n in nodes
    }
    log = mosq.log_path.read_text()
    for node in nodes:  # they are Mosquitto's clients now, with their own logins
        assert f"as {node} " in log
    on_mosquitto = {n: (c["username"], c["password"]) for n, c in stored.items()}
    # the token went to the device, not into its history
    for node in nodes:
        sent = [e for e in site.registry.events(site.registry.device(node)) if e.kind == "command"]
        assert sent and sent[-1].data["password"] == "<hidden>"
        assert on_mosquitto[node][1] not in str(
            [e.data for e in site.registry.events(site.registry.device(node))]
        )

    # 2. and back to the station's embedded broker
    with BrokerMove(site, home.name, "embedded") as back:
        result = back.run()
    assert result.ok, [(d.node, d.phase, d.reason) for d in result.devices]
    assert site.registry.home(home.id).broker_url is None
    assert site.demo is not None
    host, port = site.demo.broker_address
    assert {n: (c["broker"], c["port"]) for n, c in _stored(site).items()} == {
        n: (host, port) for n in nodes
    }
    wait_for(lambda: all(site.registry.device(n).online for n in nodes), 20)
    # their Mosquitto logins were revoked once they had left
    for node in nodes:
        assert not _login_accepted(mosq.port, *on_mosquitto[node])


def test_a_broker_the_devices_cannot_reach_leaves_them_where_they_were(site, mosq, monkeypatch):
    # The station reaches the Mosquitto, the home LAN does not route the devices to it.
    assert site.demo is not None
    monkeypatch.setattr(site.demo.air, "extend_reach", lambda *a, **k: None)
    home = site.registry.homes()[0]
    before = _stored(site)
    with BrokerMove(site, home.name, _url(mosq)) as move:
        result = move.run()
    canary, other = result.devices
    assert canary.phase is Phase.FAILED and "EHOSTUNREACH" in canary.reason, canary
    assert other.phase is Phase.CANCELLED and other.started is None  # never told anything
    assert result.stopped.startswith(f"the canary {canary.node} failed")
    assert site.registry.home(home.id).broker_url is None  # the home did not move
    assert _stored(site) == before  # nothing stored changed on either device
    wait_for(lambda: site.registry.device(canary.node).online, 20)  # back on the old one


def test_a_move_that_stopped_halfway_is_finished_by_running_it_again(site, mosq):
    assert site.demo is not None
    home = site.registry.homes()[0]
    _, second = site.demo.fleet.devices
    node2 = second.config()["mqtt"]["node_name"]
    second.power_off()  # unplugged while the installer moves the home
    wait_for(lambda: not site.registry.device(node2).online, 20)
    with BrokerMove(site, home.name, _url(mosq)) as move:
        result = move.run()
    assert [d.phase for d in result.devices] == [Phase.CONFIRMED, Phase.SKIPPED]
    assert not move.home_moved  # half moved: the home keeps its old broker
    assert site.registry.home(home.id).broker_url is None
    moved = result.devices[0].node
    assert site.registry.device(moved).broker_address == f"127.0.0.1:{mosq.port}"
    second.start()  # plugged in again: back on the embedded broker it knows
    wait_for(lambda: site.registry.device(node2).online, 30)
    with BrokerMove(site, home.name, _url(mosq)) as again:
        assert again.already == [moved] and again.nodes == [node2]
        result = again.run()
    assert [(d.node, d.phase) for d in result.devices] == [(node2, Phase.CONFIRMED)]
    assert again.home_moved
    assert site.registry.home(home.id).broker_url == f"mqtt://127.0.0.1:{mosq.port}"


def test_refusals_are_one_clear_line(site, mosq):
    home = site.registry.homes()[0]
    with pytest.raises(StationError, match="already reports to the station's embedded broker"):
        BrokerMove(site, home.name, "embedded")
    with pytest.raises(StationError, match="no home 'Nowhere'"):
        BrokerMove(site, "Nowhere", "embedded")
    with pytest.raises(StationError, match="plain MQTT only"):
        BrokerMove(site, home.name, f"mqtts://a:b@127.0.0.1:{mosq.port}")
    with pytest.raises(StationError, match="cannot take devices"):
        BrokerMove(site, home.name, f"mqtt://admin:wrong@127.0.0.1:{mosq.port}")

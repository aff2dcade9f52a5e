"""A rerun whose scan told nothing apart (the seed's plain SSID, no BSSID) registers a
new entry in step 1; step 3 learns the chip is already registered and configures the
first entry again instead of failing "already registered"."""

from __future__ import annotations

from station.provisioning import Provisioner, SetupTarget
from station.wifi.guard import Excursion


def test_step_3_adopts_the_chips_first_entry(site):
    registry = site["registry"]
    first_world = site["world"](1)
    station = site["station"](first_world)
    home = registry.add_home("Smith", first_world.home_ssid)
    prov = Provisioner(station)
    (ap,) = first_world.air.setup_aps()
    ticket = prov.prepare(SetupTarget(ap.ssid, ap.bssid), home)
    with Excursion(station.wifi, station.journal) as trip:
        prov.configure(trip, ticket, home.wifi_ssid, first_world.home_password)
    assert prov.wait_online([ticket]) == {ticket.pid: True}
    first = registry.device("esp32_dht11_001")
    first_world.stop()  # the device is gone from that site...

    # ...and shows up again in setup mode, seen as nothing but an SSID.
    world = site["world"](1)
    station = site["station"](world)
    events: list = []
    prov = Provisioner(station, events.append)
    (ap,) = world.air.setup_aps()
    ticket = prov.prepare(SetupTarget(ap.ssid), home, name="")
    assert ticket.device.node_name == "esp32_dht11_002"  # step 1 could not know
    with Excursion(station.wifi, station.journal) as trip:
        prov.configure(trip, ticket, home.wifi_ssid, world.home_password)
    assert ticket.device.node_name == "esp32_dht11_001"
    assert prov.wait_online([ticket]) == {ticket.pid: True}

    assert [d.node_name for d in registry.devices()] == ["esp32_dht11_001"]
    again = registry.device("esp32_dht11_001")
    assert again.chip_id == first.chip_id and again.online
    assert again.token_hash != first.token_hash
    assert registry.job(ticket.pid).device.id == first.id
    assert any("already registered as esp32_dht11_001" in p.message for p in events)
    dropped = [e for e in registry.events(again) if e.kind == "reprovision"]
    assert dropped[0].data["dropped"] == "esp32_dht11_002"

"""FirmwareUpdate on a running demo station: real embedded broker, real firmware on the
unix port (96 KB heap), the bundle served through the simulated home LAN."""

from __future__ import annotations

import pytest
from support import wait_for

from station.errors import StationError
from station.fleet.bundle import make_bundle
from station.fleet.rollout import Phase
from station.fleet.session import FirmwareUpdate, next_version
from station.runtime import StationRuntime

pytestmark = pytest.mark.timeout(240)


def _nodes(rt: StationRuntime) -> list[str]:
    return [d.node_name for d in rt.registry.devices()]


def test_every_device_is_confirmed_by_the_version_it_reports(site):
    nodes = _nodes(site)
    before = {site.registry.device(n).firmware for n in nodes}
    assert before == {"1.0.0"}
    seen: list[tuple[str, Phase]] = []
    with FirmwareUpdate(
        site, nodes, on_progress=lambda d: seen.append((d.node, d.phase))
    ) as update:
        assert update.version == "1.0.1"  # the next patch version
        result = update.run()
    assert result.ok, [(d.node, d.phase, d.reason) for d in result.devices]
    assert [d.phase for d in result.devices] == [Phase.CONFIRMED, Phase.CONFIRMED]
    assert result.devices[0].canary and not result.devices[1].canary
    # the canary was confirmed before the other one was sent anything
    canary_done = seen.index((nodes[0], Phase.CONFIRMED))
    assert seen.index((nodes[1], Phase.SENT)) > canary_done
    for node in nodes:
        assert site.registry.device(node).firmware == "1.0.1"  # what the device said
        phases = [p for n, p in seen if n == node]
        assert phases[:2] == [Phase.SENT, Phase.DOWNLOADING]
        assert Phase.REBOOTING in phases
        events = [
            e
            for e in site.registry.events(site.registry.device(node))
            if e.kind == "firmware_update"
        ]
        assert events and events[0].data["phase"] == "confirmed"
        assert events[0].data["from"] == "1.0.0"


def test_a_firmware_that_crashes_at_boot_rolls_the_canary_back_and_stops(site):
    nodes = _nodes(site)
    with FirmwareUpdate(site, nodes, bad_bundle=True) as update:
        result = update.run()
    canary, other = result.devices
    assert canary.phase is Phase.ROLLED_BACK, (canary.phase, canary.reason)
    assert "crashed at boot" in canary.reason
    assert other.phase is Phase.CANCELLED and other.started is None  # never sent anything
    assert result.stopped.startswith(f"the canary {canary.node} rolled back")
    assert not result.ok
    # both still run the old firmware, and say so
    assert {site.registry.device(n).firmware for n in nodes} == {"1.0.0"}


def test_a_bundle_with_a_tampered_file_fails_the_canary_and_stops(site, tmp_path):
    """The other bad bundle (issue 11): bytes that are not what the manifest says."""
    good = make_bundle(tmp_path / "b", version="1.0.1", board="host")
    victim = next(f for f in good.manifest["files"] if f["path"] == "homemode.mpy")
    data = bytearray((good.root / victim["path"]).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    (good.root / victim["path"]).write_bytes(bytes(data))
    nodes = _nodes(site)
    with FirmwareUpdate(site, nodes, bundle=good) as update:
        result = update.run()
    canary, other = result.devices
    assert (canary.phase, canary.reason) == (Phase.FAILED, "homemode.mpy: hash mismatch")
    assert other.phase is Phase.CANCELLED and other.started is None
    assert result.stopped == f"the canary {canary.node} failed: homemode.mpy: hash mismatch"
    assert {site.registry.device(n).firmware for n in nodes} == {"1.0.0"}
    wait_for(lambda: site.registry.device(canary.node).online, 10)  # it never left


def test_refusals_are_one_clear_line(site):
    with pytest.raises(StationError, match="no device 'nope'"):
        FirmwareUpdate(site, ["nope"])
    with pytest.raises(StationError, match=r"already runs firmware 1\.0\.0"):
        FirmwareUpdate(site, _nodes(site), version="1.0.0")
    with pytest.raises(StationError, match="version"):
        FirmwareUpdate(site, _nodes(site), version="v2")


def test_next_version_counts_as_numbers():
    assert next_version(["1.0.9", "1.0.10", None]) == "1.0.11"
    assert next_version(["2.1"]) == "2.1.1"  # a patch version, padded to three numbers

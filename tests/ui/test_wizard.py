"""The single-device wizard: the seed's five screens with the simulated WiFi backend, and
the manual flow (the person switches networks when told, confirming on the screens)."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtWidgets import QWizard

from station.runtime import StationRuntime
from station.sim.wifi import SimulatedBackend
from station.ui.wizard import COMPLETE, CONFIGURE, CONNECT, PREPARE, RECONNECT, ProvisionWizard
from station.wifi.errors import Cancelled
from station.wifi.manual import (
    CHECK_ACTION,
    CONNECT_ACTION,
    connect_instruction,
    home_instruction,
)

NEXT = QWizard.WizardButton.NextButton
FINISH = QWizard.WizardButton.FinishButton


@pytest.fixture
def site(demo_runtime) -> StationRuntime:
    """conftest's demo station: 3 simulated devices, a home "Demo home" and its password."""
    return demo_runtime


class PersonOnSimulatedAir(SimulatedBackend):
    """The manual backend's contract on the simulated air: it asks with the seed's
    instructions, and the "person" switches networks once they confirm."""

    name = "manual"
    can_scan = False

    def __init__(self, air: Any, confirm: Any = None) -> None:
        super().__init__(air)
        self.confirm = confirm

    def _join(self, req, deadline, on_profile):
        if not self.confirm(connect_instruction(req.ssid, req.passphrase)):
            raise Cancelled(f"Cancelled: not connected to {req.ssid}.")
        deadline.restart()
        return super()._join(req, deadline, on_profile)

    def return_home(self, home, *, timeout: float = 30.0) -> None:
        self.confirm(home_instruction(home))
        super().return_home(home, timeout=timeout)


def _home(rt: StationRuntime):
    home = rt.registry.homes()[0]
    return home, rt.secrets.home_password(home.id)


def _laptop_home(rt: StationRuntime) -> bool:
    laptop = rt.demo.air.laptop()
    return laptop.ssid == rt.demo.home_ssid and not laptop.profiles


def _wizard(qtbot, rt: StationRuntime, **kw) -> ProvisionWizard:
    home, password = _home(rt)
    wizard = ProvisionWizard(rt, home, kw.pop("password", password), **kw)
    qtbot.addWidget(wizard)
    wizard.show()
    return wizard


def _next(wizard: ProvisionWizard) -> None:
    button = wizard.button(NEXT)
    assert button.isEnabled(), wizard.currentPage().note.text()
    button.click()


def _at(qtbot, wizard: ProvisionWizard, page_id: int, timeout: int = 30_000) -> None:
    qtbot.waitUntil(lambda: wizard.currentId() == page_id, timeout=timeout)


def test_five_steps_with_the_simulated_backend(qtbot, site):
    wizard = _wizard(qtbot, site)
    seen: list[int] = []
    wizard.worker.progress.connect(lambda p: seen.append(p.progress))
    prepare = wizard.prepare_page
    assert prepare.title().startswith("Step 1 of 5")
    assert wizard.button(NEXT).text() == "Continue"
    qtbot.waitUntil(lambda: prepare.target.count() == 3, timeout=20_000)  # scanned by itself
    prepare.name.setText("Living Room Sensor")
    _next(wizard)

    # Step 2 runs by itself (automatic backend), then step 3 asks for the home WiFi.
    _at(qtbot, wizard, CONFIGURE)
    configure = wizard.configure_page
    home, password = _home(site)
    assert configure.ssid.text() == home.wifi_ssid and configure.password.text() == password
    assert wizard.button(NEXT).text() == "Send Configuration to Device"
    assert site.demo.air.laptop().ssid == prepare.target.currentText()  # on the device AP
    _next(wizard)

    _at(qtbot, wizard, COMPLETE)
    done = wizard.complete_page
    assert done.headline.text() == "✓ Device Connected"
    device = site.registry.devices()[0]
    assert done.device_id.text() == f"Device ID: {device.chip_id}"
    assert done.added_to.text() == f"Added to: {home.name}"
    assert device.name == "Living Room Sensor" and device.is_provisioned
    assert done.bar.value() == 100
    assert {40, 60, 80, 100} <= set(seen)
    assert _laptop_home(site)
    assert wizard.button(FINISH).text() == "Go to Devices"
    with qtbot.waitSignal(wizard.goToDevices, timeout=1000):
        wizard.button(FINISH).click()


def test_manual_flow_through_the_confirm_bridge(qtbot, site):
    site.wifi = PersonOnSimulatedAir(site.demo.air)  # confirm=None: the GUI provides it
    chip = site.demo.chip_ids[0]
    ap = site.demo.air.setup_ap(chip).ssid
    wizard = _wizard(qtbot, site, password="not-the-password")
    assert site.wifi.confirm == wizard.bridge.confirm
    prepare = wizard.prepare_page
    assert not prepare.scan_button.isEnabled()  # the manual backend cannot scan
    prepare.target.setEditText(ap)
    _next(wizard)

    # Step 2: the seed's instruction and button, answered from the GUI.
    _at(qtbot, wizard, CONNECT)
    page = wizard.connect_page
    qtbot.waitUntil(lambda: wizard.question is not None, timeout=20_000)
    assert f"connect to {ap} (password: 12345678)" in page.text.text()
    assert wizard.button(NEXT).text() == CONNECT_ACTION
    assert site.demo.air.laptop().ssid == site.demo.home_ssid  # nobody switched yet
    _next(wizard)

    # Step 3, first with a wrong home password: reported, still on the device's network.
    _at(qtbot, wizard, CONFIGURE)
    configure = wizard.configure_page
    _next(wizard)
    qtbot.waitUntil(lambda: "password" in configure.note.text().lower(), timeout=30_000)
    assert wizard.currentId() == CONFIGURE and site.demo.air.laptop().ssid == ap
    configure.password.setText(site.demo.home_password)
    _next(wizard)

    # Step 4: "Please reconnect to your home WiFi…", then "Check Device Connection".
    _at(qtbot, wizard, RECONNECT)
    reconnect = wizard.reconnect_page
    assert reconnect.text.text().startswith("Please reconnect to your home WiFi")
    assert site.demo.home_ssid in reconnect.text.text()
    assert wizard.button(NEXT).text() == CHECK_ACTION
    _next(wizard)
    _at(qtbot, wizard, COMPLETE)
    assert wizard.complete_page.device_id.text().startswith("Device ID: ")
    assert _laptop_home(site)


def test_cancel_on_the_device_network_goes_home(qtbot, site):
    wizard = _wizard(qtbot, site)
    qtbot.waitUntil(lambda: wizard.prepare_page.target.count() == 3, timeout=20_000)
    _next(wizard)
    _at(qtbot, wizard, CONFIGURE)
    assert not _laptop_home(site)
    worker = wizard.worker
    wizard.reject()
    qtbot.waitUntil(lambda: not worker.is_busy(), timeout=20_000)
    assert _laptop_home(site)


def test_no_device_network_typed_keeps_continue_disabled(qtbot, site):
    site.wifi = PersonOnSimulatedAir(site.demo.air)
    wizard = _wizard(qtbot, site)
    assert wizard.currentId() == PREPARE
    assert not wizard.button(NEXT).isEnabled()
    wizard.prepare_page.target.setEditText("my-phone-hotspot")
    _next(wizard)
    assert "not a device setup network" in wizard.prepare_page.note.text()
    assert wizard.currentId() == PREPARE
    wizard.reject()


def test_device_never_online_then_check_again(qtbot, site):
    """Seed scenario 3: the 60 s poll (shortened here) times out with a retry; the device
    connects once its route to the station is back, and "Check Device Connection" sees it."""
    from station.sim.demo import BROKER_HOST, BROKER_PORT

    site.settings.provisioning.online_timeout_s = 2
    air, ssid, pw = site.demo.air, site.demo.home_ssid, site.demo.home_password
    broker = f"{BROKER_HOST}:{BROKER_PORT}"
    air.add_home_network(ssid, pw, reach={})  # no route to the broker
    wizard = _wizard(qtbot, site)
    qtbot.waitUntil(lambda: wizard.prepare_page.target.count() == 3, timeout=20_000)
    _next(wizard)
    _at(qtbot, wizard, CONFIGURE)
    _next(wizard)
    _at(qtbot, wizard, RECONNECT)
    page = wizard.reconnect_page
    qtbot.waitUntil(lambda: "did not come online" in page.note.text(), timeout=30_000)
    assert CHECK_ACTION in page.note.text() and wizard.button(NEXT).isEnabled()
    assert _laptop_home(site)
    air.add_home_network(ssid, pw, reach={broker: f"127.0.0.1:{site.broker.port}"}, laptop=[broker])
    site.settings.provisioning.online_timeout_s = 20
    _next(wizard)
    _at(qtbot, wizard, COMPLETE)
    assert wizard.complete_page.device_id.text() != "Device ID: unknown"


@pytest.fixture
def manual_site(tmp_path, monkeypatch):
    """The demo as `station --demo` runs it with settings provisioning.wifi_backend =
    "manual": the real manual backend, its gateway from the simulated air."""
    from station.settings import Settings
    from station.sim.demo import FAST_TIMING

    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STATION_CONFIG", str(tmp_path / "settings.json"))
    settings = Settings()
    settings.provisioning.wifi_backend = "manual"
    settings.provisioning.online_timeout_s = 20
    settings.provisioning.wifi_connect_timeout_s = 10
    rt = StationRuntime.start(settings, demo_devices=1, demo_timing=FAST_TIMING)
    yield rt
    rt.stop()


def test_real_manual_backend_on_the_demo_the_person_moves_the_laptop(qtbot, manual_site):
    """The seed's own flow in the GUI: the station tells the person which network to join,
    the person joins it (the simulated laptop moves), clicks the seed's buttons; step 3
    offers the networks the device hears, home preselected."""
    rt = manual_site
    assert rt.wifi.name == "manual" and not rt.wifi.can_scan
    air = rt.demo.air
    ap = air.setup_ap(rt.demo.chip_ids[0]).ssid
    wizard = _wizard(qtbot, rt)
    assert len(wizard.sim_wifi) == 2  # the demo's stand-in for the OS's WiFi settings
    wizard.prepare_page.target.setEditText(ap)
    _next(wizard)

    # Step 2: the instruction names the device network and its password.
    _at(qtbot, wizard, CONNECT)
    qtbot.waitUntil(lambda: wizard.question is not None, timeout=20_000)
    page = wizard.connect_page
    assert f"connect to {ap} (password: 12345678)" in page.text.text()
    assert wizard.button(NEXT).text() == CONNECT_ACTION
    # Clicking without having switched: the seed's "Cannot reach device", asked again.
    _next(wizard)
    qtbot.waitUntil(
        lambda: wizard.question is not None and wizard.question.problem is not None,
        timeout=30_000,
    )
    assert page.text.text().startswith(f"Cannot reach device. Make sure you're connected to {ap}")
    assert wizard.currentId() == CONNECT
    # Now the person joins the device network in the (simulated) WiFi settings.
    settings_widget = wizard.sim_wifi[0]
    settings_widget.networks.setCurrentText(ap)
    settings_widget.join_button.click()
    assert air.laptop().ssid == ap
    _next(wizard)

    # Step 3: the device's own scan, home network preselected.
    _at(qtbot, wizard, CONFIGURE)
    configure = wizard.configure_page
    qtbot.waitUntil(lambda: configure.heard is not None, timeout=10_000)
    heard = [configure.networks.itemText(i) for i in range(configure.networks.count())]
    assert rt.demo.home_ssid in heard
    assert configure.networks.currentText() == rt.demo.home_ssid
    assert configure.ssid.text() == rt.demo.home_ssid
    _next(wizard)

    # Step 4: "Please reconnect to your home WiFi"; the person goes home, then checks.
    _at(qtbot, wizard, RECONNECT)
    reconnect = wizard.reconnect_page
    qtbot.waitUntil(lambda: wizard.question is not None, timeout=30_000)
    assert reconnect.text.text().startswith("Please reconnect to your home WiFi")
    assert rt.demo.home_ssid in reconnect.text.text()
    assert wizard.button(NEXT).text() == CHECK_ACTION
    air.move_laptop(rt.demo.home_ssid)  # as the person does in the OS's WiFi settings
    _next(wizard)

    _at(qtbot, wizard, COMPLETE)
    device = rt.registry.devices()[0]
    assert device.is_provisioned
    qtbot.waitUntil(lambda: rt.registry.device(device.node_name).online, timeout=10_000)
    assert wizard.complete_page.device_id.text() == f"Device ID: {device.chip_id}"
    assert air.laptop().ssid == rt.demo.home_ssid


def test_device_scan_warns_when_it_does_not_hear_the_home_network(qtbot, site):
    """Step 3 lists the networks the device hears (GET /api/scan). A home whose network
    the device does not hear is flagged; picking the heard one from the list works."""
    home, password = _home(site)
    home.wifi_ssid = "NotOnThisAir"
    wizard = ProvisionWizard(site, home, password)
    qtbot.addWidget(wizard)
    wizard.show()
    qtbot.waitUntil(lambda: wizard.prepare_page.target.count() == 3, timeout=20_000)
    _next(wizard)
    _at(qtbot, wizard, CONFIGURE)
    configure = wizard.configure_page
    qtbot.waitUntil(lambda: configure.heard is not None, timeout=10_000)
    assert configure.ssid.text() == "NotOnThisAir"  # kept: it may be a hidden network
    assert "does not hear “NotOnThisAir”" in configure.note.text()
    heard = [configure.networks.itemText(i) for i in range(configure.networks.count())]
    assert site.demo.home_ssid in heard and "NotOnThisAir" not in heard
    configure.networks.setCurrentIndex(heard.index(site.demo.home_ssid))
    assert configure.ssid.text() == site.demo.home_ssid
    _next(wizard)
    _at(qtbot, wizard, COMPLETE)
    assert site.registry.devices()[0].is_provisioned

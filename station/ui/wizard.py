"""The single-device wizard: the seed's five steps as five screens.

    wizard = ProvisionWizard(runtime, home, home_password, parent=window)
    wizard.open()

All work runs in a DeviceWorker; the pages only react to its signals, so the window
never freezes. With an automatic WiFi backend the station joins the device's network
by itself and the Connect screen shows progress; with the manual backend the screens
show the seed's instructions and the person confirms with the seed's buttons
("I'm Connected to Device WiFi", "Check Device Connection") through the ConfirmBridge.
The laptop returns home on every path (the worker's Excursion), including Cancel.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from station.device_client import HeardNetwork
from station.errors import StationError
from station.provisioning import Progress, SetupTarget, is_setup_ap
from station.registry import Home
from station.runtime import StationRuntime
from station.sim.air import Air
from station.ui.worker import ConfirmBridge, DeviceWorker, broker_route, confirm_bridge
from station.wifi.manual import CHECK_ACTION, CONNECT_ACTION, Instruction

log = logging.getLogger(__name__)

PREPARE, CONNECT, CONFIGURE, RECONNECT, COMPLETE = range(5)

# Workers still going home after their wizard closed: kept alive until idle, since
# deleting a thread pool waits for its thread (that would block the GUI thread).
_draining: set[DeviceWorker] = set()


class _StepPage(QWizardPage):
    """A page with the seed's progress figure and a line for what is happening."""

    def __init__(self, number: int, title: str, start: int) -> None:
        super().__init__()
        self.setTitle(f"Step {number} of 5: {title}")
        self.start_progress = start
        self.bar = QProgressBar()
        self.bar.setRange(0, 100)
        self.bar.setValue(start)
        self.bar.setFormat("%p %")
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.body = QVBoxLayout()
        layout = QVBoxLayout(self)
        layout.addWidget(self.bar)
        layout.addWidget(self.text)
        layout.addLayout(self.body)
        layout.addStretch(1)
        layout.addWidget(self.note)
        self.waiting = False  # work for this page is in progress

    def wiz(self) -> ProvisionWizard:
        return self.wizard()  # type: ignore[return-value]

    def say(self, text: str, error: bool = False) -> None:
        self.note.setText(text)
        self.note.setStyleSheet("color: #b3261e" if error else "color: palette(mid)")

    def set_waiting(self, waiting: bool) -> None:
        self.waiting = waiting
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return not self.waiting


class SimulatedWifiSettings(QWidget):
    """Demo with the manual backend: stands in for the OS's WiFi settings, where the person
    joins a network by hand (it moves the simulated laptop on the demo's air)."""

    def __init__(self, air: Air, setup_passphrase: str) -> None:
        super().__init__()
        self.air = air
        self.setup_passphrase = setup_passphrase
        self.networks = QComboBox()
        self.join_button = QPushButton("Join")
        self.where = QLabel()
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Simulated WiFi settings:"))
        row.addWidget(self.networks, 1)
        row.addWidget(self.join_button)
        row.addWidget(self.where)
        self.join_button.clicked.connect(self.join)
        self.refresh()

    def refresh(self) -> None:
        current = self.networks.currentText()
        self.networks.clear()
        names = [n.ssid for n in self.air.home_networks()]
        names += [ap.ssid for ap in self.air.setup_aps()]
        self.networks.addItems(names)
        if current in names:
            self.networks.setCurrentText(current)
        on = self.air.laptop().ssid
        self.where.setText(f"on {on}" if on else "on no network")

    def join(self) -> None:
        ssid = self.networks.currentText()
        if not ssid:
            return
        try:
            setup_ap = self.air.find_setup_ap(ssid=ssid) is not None
            self.air.move_laptop(ssid, self.setup_passphrase if setup_ap else None)
        except (LookupError, PermissionError) as exc:
            self.where.setText(f"cannot join: {exc}")
            return
        self.refresh()


class PreparePage(_StepPage):
    def __init__(self, home: Home, can_scan: bool) -> None:
        super().__init__(1, "Prepare device", 20)
        self.setButtonText(QWizard.WizardButton.NextButton, "Continue")
        self.text.setText(
            f"The device will be added to {home.name} and join its WiFi "
            f"network {home.wifi_ssid}. Put the device in setup mode, pick its setup "
            "network and, if you like, give it a name."
        )
        self.target = QComboBox()
        self.target.setEditable(True)
        if (edit := self.target.lineEdit()) is not None:
            edit.setPlaceholderText("esp32-dht11-Setup-XXXXXX")
        self.scan_button = QPushButton("Scan")
        self.scan_button.setEnabled(can_scan)
        if not can_scan:
            self.scan_button.setToolTip(
                "This computer cannot scan: type the network name printed on the device."
            )
        row = QHBoxLayout()
        row.addWidget(self.target, 1)
        row.addWidget(self.scan_button)
        self.name = QLineEdit()
        self.name.setPlaceholderText("Optional, e.g. Living Room Sensor")
        form = QFormLayout()
        form.addRow("Device network:", row)
        form.addRow("Device name:", self.name)
        self.body.addLayout(form)
        self.done = False
        self.target.currentTextChanged.connect(lambda _t: self.completeChanged.emit())

    def isComplete(self) -> bool:
        return not self.waiting and bool(self.target.currentText().strip())

    def validatePage(self) -> bool:
        if self.done:
            return True
        self.wiz().prepare()
        return False


class ConnectPage(_StepPage):
    def __init__(self) -> None:
        super().__init__(2, "Connect to device", 40)
        self.setButtonText(QWizard.WizardButton.NextButton, CONNECT_ACTION)
        self.retry_button = QPushButton("Try again")
        self.retry_button.hide()
        self.body.addWidget(self.retry_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.done = False

    def initializePage(self) -> None:
        self.retry_button.hide()
        self.wiz().start_connect()

    def validatePage(self) -> bool:
        if self.done:
            return True
        self.wiz().answer_question()  # manual: "I'm Connected to Device WiFi"
        return False


class ConfigurePage(_StepPage):
    def __init__(self, home: Home, password: str) -> None:
        super().__init__(3, "Configure device", 60)
        self.setButtonText(QWizard.WizardButton.NextButton, "Send Configuration to Device")
        self.text.setText(
            "The device will join this WiFi network. Check the name and password of the "
            "home WiFi, then send them to the device."
        )
        self.home_ssid = home.wifi_ssid
        # The networks the device itself hears (GET /api/scan), home preselected; the
        # name stays editable (a hidden network is not in any scan).
        self.networks = QComboBox()
        self.networks.setEditable(True)
        self.ssid = QLineEdit(home.wifi_ssid)
        self.networks.setLineEdit(self.ssid)
        self.networks.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.ssid.setText(home.wifi_ssid)
        self.heard: list[object] | None = None  # HeardNetwork list once the device answered
        self.password = QLineEdit(password)
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        show = QPushButton("Show")
        show.setCheckable(True)
        show.toggled.connect(
            lambda on: self.password.setEchoMode(
                QLineEdit.EchoMode.Normal if on else QLineEdit.EchoMode.Password
            )
        )
        row = QHBoxLayout()
        row.addWidget(self.password, 1)
        row.addWidget(show)
        form = QFormLayout()
        form.addRow("Home WiFi name:", self.networks)
        form.addRow("Home WiFi password:", row)
        self.body.addLayout(form)
        self.done = False
        self.ssid.textChanged.connect(lambda _t: self.completeChanged.emit())

    def isComplete(self) -> bool:
        return not self.waiting and bool(self.ssid.text().strip())

    def show_networks(self, networks: list[HeardNetwork] | None) -> None:
        """Fill the list from the device's scan and preselect the home network."""
        typed = self.ssid.text().strip() or self.home_ssid
        self.heard = list(networks) if networks is not None else None
        self.networks.blockSignals(True)
        self.networks.clear()
        for net in networks or []:
            lock = "secured" if net.secure else "open"
            self.networks.addItem(net.ssid, net)
            i = self.networks.count() - 1
            self.networks.setItemData(i, f"{net.rssi} dBm, {lock}", Qt.ItemDataRole.ToolTipRole)
        index = self.networks.findText(typed, Qt.MatchFlag.MatchExactly)
        if index >= 0:
            self.networks.setCurrentIndex(index)
        self.ssid.setText(typed)
        self.networks.blockSignals(False)
        if networks is None:
            self.say("The device could not list the networks it hears; type the name.")
        elif index < 0:
            self.say(
                f"The device does not hear “{typed}”: it may be out of range or 5 GHz only "
                "(the device uses 2.4 GHz). Pick a network it hears, or keep the name if "
                "the network is hidden.",
                error=True,
            )
        else:
            n = len(networks)
            self.say(f"The device hears {n} network{'s' if n != 1 else ''}; {typed} is one.")

    def validatePage(self) -> bool:
        if self.done:
            return True
        self.wiz().send_configuration(self.ssid.text().strip(), self.password.text())
        return False


class ReconnectPage(_StepPage):
    def __init__(self) -> None:
        super().__init__(4, "Reconnect to home WiFi", 80)
        self.setButtonText(QWizard.WizardButton.NextButton, CHECK_ACTION)
        self.done = False

    def validatePage(self) -> bool:
        if self.done:
            return True
        self.wiz().check_connection()
        return False


class CompletePage(_StepPage):
    def __init__(self, home: Home) -> None:
        super().__init__(5, "Complete", 100)
        self.setButtonText(QWizard.WizardButton.FinishButton, "Go to Devices")
        self.headline = QLabel("✓ Device Connected")
        self.headline.setStyleSheet("font-size: 16pt; font-weight: bold; color: #1b7f3b")
        self.device_id = QLabel()
        self.added_to = QLabel(f"Added to: {home.name}")
        after = QLabel("It appears in the device list, with live readings.")
        for w in (self.headline, self.device_id, self.added_to, after):
            w.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.body.addWidget(w)
        self.text.hide()

    def show_device(self, chip_id: str, node_name: str) -> None:
        self.device_id.setText(f"Device ID: {chip_id or 'unknown'}")
        self.say(f"Node name: {node_name}")


class ProvisionWizard(QWizard):
    """One device through the seed's five steps. `goToDevices` when the person asks."""

    goToDevices = Signal()

    def __init__(
        self,
        runtime: StationRuntime,
        home: Home,
        password: str,
        parent: QWidget | None = None,
        *,
        target: SetupTarget | None = None,
        bridge: ConfirmBridge | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add one device")
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        # No Back: each step changed something (a registration, the WiFi, the device).
        self.setButtonLayout(
            [
                QWizard.WizardButton.Stretch,
                QWizard.WizardButton.NextButton,
                QWizard.WizardButton.FinishButton,
                QWizard.WizardButton.CancelButton,
            ]
        )
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage)
        self.runtime = runtime
        self.home = home
        self.bridge = bridge or confirm_bridge(runtime)
        self.bridge.asked.connect(self._on_asked)
        self.question: Instruction | None = None
        self.ticket_node = ""
        self.worker: DeviceWorker | None = None
        self.finished_ok = False
        wifi = runtime.wifi
        self.manual = wifi is not None and not getattr(wifi, "can_scan", True)
        if self.manual and wifi is not None and hasattr(wifi, "usual_home"):
            wifi.usual_home = home.wifi_ssid  # where step 4 sends the person back to

        self.prepare_page = PreparePage(home, can_scan=not self.manual)
        self.connect_page = ConnectPage()
        self.configure_page = ConfigurePage(home, password)
        self.reconnect_page = ReconnectPage()
        self.complete_page = CompletePage(home)
        for i, page in enumerate(
            (
                self.prepare_page,
                self.connect_page,
                self.configure_page,
                self.reconnect_page,
                self.complete_page,
            )
        ):
            self.setPage(i, page)
        self.setButtonText(QWizard.WizardButton.NextButton, "Continue")
        self.sim_wifi: list[SimulatedWifiSettings] = []
        demo = getattr(runtime, "demo", None)
        if self.manual and demo is not None:
            # Demo: the person switches the simulated laptop's WiFi here.
            for page in (self.connect_page, self.reconnect_page):
                widget = SimulatedWifiSettings(
                    demo.air, runtime.settings.provisioning.setup_passphrase
                )
                page.body.addWidget(widget)
                self.sim_wifi.append(widget)
        self.resize(640, 420)

        try:
            station = runtime.provisioning_station()
        except StationError as exc:
            self.prepare_page.say(f"Provisioning is not available: {exc}", error=True)
            self.prepare_page.set_waiting(True)
            return
        # No parent: it may outlive the wizard. A home with its own broker is provisioned
        # through it (checked before the device is registered).
        w = DeviceWorker(station, self.bridge, route=lambda h: broker_route(runtime, h))
        w.progress.connect(self._on_progress)
        w.scanned.connect(self._on_scanned)
        w.prepared.connect(self._on_prepared)
        w.connected.connect(self._on_connected)
        w.deviceNetworks.connect(self.configure_page.show_networks)
        w.configureFailed.connect(self._on_configure_failed)
        w.configured.connect(self._on_configured)
        w.online.connect(self._on_online)
        w.onlineTimeout.connect(self._on_online_timeout)
        w.failed.connect(self._on_failed)
        self.worker = w
        self.prepare_page.scan_button.clicked.connect(self.scan)
        if target is not None:
            self.prepare_page.target.addItem(target.ssid, target)
        elif not self.manual:
            self.scan()

    # -- page actions (GUI thread; the work goes to the worker) -------------------------

    def scan(self) -> None:
        if self.worker is None:
            return
        page = self.prepare_page
        page.scan_button.setEnabled(False)
        page.say("Looking for devices in setup mode…")
        self.worker.scan()

    def prepare(self) -> None:
        page = self.prepare_page
        ssid = page.target.currentText().strip()
        prefix = self.runtime.settings.provisioning.setup_ssid_prefix
        if not is_setup_ap(ssid, prefix):
            page.say(
                f"“{ssid}” is not a device setup network. They are named {prefix}-XXXXXX "
                "(printed on the device).",
                error=True,
            )
            return
        if self.worker is None:
            return
        data = page.target.currentData()
        target = data if isinstance(data, SetupTarget) and data.ssid == ssid else SetupTarget(ssid)
        page.set_waiting(True)
        page.say("Registering the device…")
        self.worker.prepare(target, self.home, page.name.text().strip())

    def start_connect(self) -> None:
        page = self.connect_page
        page.done = False
        self.bridge.owner = self
        page.set_waiting(True)
        ssid = self.prepare_page.target.currentText().strip()
        if self.manual:
            page.text.setText("Preparing the instructions…")
        else:
            page.text.setText(
                f"This computer is joining {ssid} by itself. It leaves the home WiFi for a "
                "moment and comes back after the device is configured."
            )
        page.say("")
        assert self.worker is not None
        self.worker.connect_and_configure()

    def answer_question(self) -> None:
        if self.question is not None:
            self.question = None
            page = self.currentPage()
            if isinstance(page, _StepPage):
                page.set_waiting(True)
                page.say("Checking…")
            self.bridge.answer(True)

    def send_configuration(self, ssid: str, password: str) -> None:
        page = self.configure_page
        page.set_waiting(True)
        page.say("Sending the configuration; the device is trying the home WiFi…")
        assert self.worker is not None
        self.worker.send_configuration(ssid, password)

    def check_connection(self) -> None:
        page = self.reconnect_page
        if self.question is not None:  # manual: the person is back on the home WiFi
            self.answer_question()
            return
        page.set_waiting(True)
        page.say("Waiting for the device to come online (up to 60 s)…")
        assert self.worker is not None
        self.worker.check_online()

    # -- worker signals ------------------------------------------------------------------

    def _on_progress(self, p: Progress) -> None:
        page = self.currentPage()
        if isinstance(page, _StepPage):
            page.bar.setValue(max(page.start_progress, p.progress))
            if not p.error:
                page.say(p.message[:1].upper() + p.message[1:])

    def _on_scanned(self, targets: list[SetupTarget]) -> None:
        page = self.prepare_page
        page.scan_button.setEnabled(True)
        typed = page.target.currentText()
        page.target.clear()
        for t in targets:
            page.target.addItem(t.ssid, t)
        if typed and all(t.ssid != typed for t in targets):
            page.target.setEditText(typed)
        n = len(targets)
        page.say(
            f"Found {n} device{'s' if n != 1 else ''} in setup mode."
            if n
            else "No device in setup mode found. Power it on (it starts in setup mode) "
            "and scan again, or type its network name."
        )

    def _on_prepared(self, _pid: str, node_name: str) -> None:
        self.ticket_node = node_name
        page = self.prepare_page
        page.bar.setValue(40)
        page.done = True
        page.set_waiting(False)
        page.say(f"Registered as {node_name}.")
        self.next()

    def _on_asked(self, instruction: Instruction) -> None:
        if self.bridge.owner is not self:
            return
        self.question = instruction
        for widget in self.sim_wifi:
            widget.refresh()
        if instruction.step == 2:
            page: _StepPage = self.connect_page
            if self.currentPage() is not page:
                return
            page.setButtonText(QWizard.WizardButton.NextButton, CONNECT_ACTION)
            page.text.setText(instruction.text)
            page.say("")
            page.set_waiting(False)
        else:
            # The seed's alert after step 3: "Please reconnect to your home WiFi".
            page = self.reconnect_page
            page.text.setText(instruction.text)
            page.say("")
            page.set_waiting(False)
            self.configure_page.done = True
            if self.currentPage() is self.configure_page:
                self.configure_page.set_waiting(False)
                self.next()

    def _on_connected(self) -> None:
        page = self.connect_page
        page.bar.setValue(60)
        page.done = True
        page.set_waiting(False)
        if self.currentPage() is page:
            self.next()

    def _on_configure_failed(self, error: str) -> None:
        page = self.configure_page
        page.set_waiting(False)
        page.say(f"{error} Correct the details and click “Send Configuration to Device”.", True)

    def _on_configured(self) -> None:
        """Restarted, and this computer is home: step 4 waits for the device."""
        self.configure_page.done = True
        page = self.reconnect_page
        page.bar.setValue(80)
        if not self.manual:
            page.text.setText(
                f"This computer is back on {self.home.wifi_ssid}. The device restarts and "
                "joins it; this takes a few seconds."
            )
        if self.currentPage() is self.configure_page:
            self.configure_page.set_waiting(False)
            self.next()
        self.check_connection()

    def _on_online(self, chip_id: str) -> None:
        page = self.reconnect_page
        page.done = True
        page.set_waiting(False)
        self.complete_page.show_device(chip_id, self.ticket_node)
        self.finished_ok = True
        if self.currentPage() is page:
            self.next()

    def _on_online_timeout(self, error: str) -> None:
        page = self.reconnect_page
        page.set_waiting(False)
        page.say(f"{error} Click “{CHECK_ACTION}” to wait again.", error=True)

    def _on_failed(self, error: str) -> None:
        page = self.currentPage()
        if not isinstance(page, _StepPage):
            return
        page.set_waiting(False)
        if page is self.connect_page:
            page.retry_button.show()
            page.set_waiting(True)  # only "Try again" makes sense now
            if not getattr(page, "_retry_wired", False):
                page.retry_button.clicked.connect(page.initializePage)
                page._retry_wired = True  # type: ignore[attr-defined]
            page.say(f"{error} This computer is back on the home WiFi.", error=True)
        else:
            page.say(error, error=True)

    # -- closing -------------------------------------------------------------------------

    def done(self, result: int) -> None:
        if result == QWizard.DialogCode.Accepted and self.finished_ok:
            self.goToDevices.emit()
        self._release_worker()
        super().done(result)

    def _release_worker(self) -> None:
        """Cancel (the worker takes the laptop home) and let it finish in the background."""
        w = self.worker
        if w is None:
            return
        self.worker = None
        w.cancel()
        if self.bridge.owner is self:
            self.bridge.owner = None
        _draining.add(w)

        def idle(busy: bool) -> None:
            if not busy:
                _draining.discard(w)

        w.busyChanged.connect(idle)
        if not w.is_busy():
            _draining.discard(w)

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Blocking (at close only): cancel and wait until the laptop is home."""
        w = self.worker
        return True if w is None else w.shutdown(timeout)

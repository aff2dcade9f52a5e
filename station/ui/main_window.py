"""The station's main window: home selector, Devices / Provision / Log tabs, and a
status bar with the laptop's network, the WiFi backend, the broker and device counts."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QAction, QCloseEvent
from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from station.followers import UNREACHABLE
from station.runtime import StationRuntime
from station.ui.handover_export import HandoverExport
from station.ui.homes import HomeSelector
from station.ui.log_panel import LogPanel, QtLogHandler
from station.ui.settings_dialog import SettingsDialog

log = logging.getLogger(__name__)

STATUS_REFRESH_MS = 2000


class MainWindow(QMainWindow):
    def __init__(
        self, runtime: StationRuntime, log_handler: QtLogHandler, notice: str = ""
    ) -> None:
        super().__init__()
        from station.ui.bridge import StationBridge
        from station.ui.devices_tab import DevicesTab
        from station.ui.provision_tab import ProvisionTab

        self.runtime = runtime
        self.setWindowTitle("ESP32 Provisioning Station" + (" — demo" if runtime.demo else ""))
        self._closed = False

        self.bridge = StationBridge()
        self.bridge.attach(runtime.broker)
        # The homes' own brokers: their devices fill the same table (threads of their
        # own connect and retry; nothing here waits for a broker).
        self.followers = runtime.follow_external_brokers()
        self.followers.add_listener(self.bridge.push_update)
        self.followers.on_change = self.bridge.push_follower
        self.homes = HomeSelector(runtime)
        self.devices_tab = DevicesTab(runtime, self.bridge)
        self.provision_tab = ProvisionTab(runtime, self.homes.selected)
        self._batch_running = False
        self._export: HandoverExport | None = None  # File → Export handover report
        self.provision_tab.runningChanged.connect(self._set_running)
        self.log_panel = LogPanel(log_handler)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.devices_tab, "Devices")
        self.tabs.addTab(self.provision_tab, "Provision")
        self.tabs.addTab(self.log_panel, "Log")

        central = QWidget()
        layout = QVBoxLayout(central)
        if notice:
            banner = QLabel(notice)
            banner.setWordWrap(True)
            banner.setStyleSheet(
                "QLabel { background: #fff4ce; color: #3b3b00; padding: 6px;"
                " border: 1px solid #e0c060; border-radius: 3px; }"
            )
            layout.addWidget(banner)
        layout.addWidget(self.homes)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self._build_menu()

        self.network_label = QLabel()
        self.backend_label = QLabel()
        self.broker_label = QLabel()
        self.home_brokers_label = QLabel()
        self.home_brokers_label.hide()
        self.devices_label = QLabel()
        for label in (
            self.network_label,
            self.backend_label,
            self.broker_label,
            self.home_brokers_label,
            self.devices_label,
        ):
            self.statusBar().addPermanentWidget(label)
        self.bridge.clientsChanged.connect(lambda _n: self._refresh_status())
        self.bridge.followerChanged.connect(lambda _s: self._refresh_followers())
        # The table model knows the counts: no database query per message.
        self.devices_tab.countsChanged.connect(self._show_counts)
        # A firmware update's outcome, where the eye goes when it ends (the last one's
        # goes when the next starts).
        self.devices_tab.updateStarted.connect(self.statusBar().clearMessage)
        self.devices_tab.updateFinished.connect(
            lambda text: self.statusBar().showMessage(text, 60_000)
        )
        self._show_counts(self.devices_tab.model.online_count(), self.devices_tab.model.rowCount())
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._refresh_status)
        self._timer.start(STATUS_REFRESH_MS)
        self._refresh_status()
        self.resize(1280, 760)

    def _build_menu(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        settings = QAction("&Settings…", self)
        settings.triggered.connect(self.open_settings)
        quit_action = QAction("&Quit", self)
        quit_action.triggered.connect(self.close)
        self.export_action = QAction("Export &handover report…", self)
        self.export_action.triggered.connect(self.export_handover)
        file_menu.addAction(settings)
        file_menu.addAction(self.export_action)
        file_menu.addSeparator()
        file_menu.addAction(quit_action)
        prov = self.menuBar().addMenu("&Provision")
        wizard = QAction("Single device &wizard…", self)
        wizard.triggered.connect(self.open_wizard)
        prov.addAction(wizard)

    # -- actions -----------------------------------------------------------------------

    def open_settings(self) -> None:
        source = self.runtime.file_settings or self.runtime.settings
        dialog = SettingsDialog(source, self)
        if dialog.exec():
            # Provisioning settings apply now, to the running station too.
            self.runtime.settings.provisioning.__dict__.update(source.provisioning.__dict__)
            log.info("settings saved")

    def export_handover(self) -> None:
        """The selected home's handover report: a PDF to print (with QR labels) and a
        CSV beside it, written off the GUI thread."""
        from PySide6.QtWidgets import QFileDialog

        home = self.homes.current()
        if home is None:
            QMessageBox.information(self, "Handover report", "Add or select a home first.")
            return
        if self._export is not None and self._export.busy:
            return
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in home.name).strip("-")
        suggested = str(Path.home() / f"{safe or 'home'}-handover.pdf")
        path, _ = QFileDialog.getSaveFileName(
            self, "Export handover report", suggested, "PDF (*.pdf)"
        )
        if not path:
            return
        self._export = HandoverExport(self.runtime, self)
        self._export.finished.connect(self._handover_written)
        self._export.failed.connect(
            lambda message: QMessageBox.warning(self, "Handover report", message)
        )
        self.statusBar().showMessage(f"Writing the handover report for {home.name}…")
        self._export.export(home, path)

    def _handover_written(self, pdf: str, csv: str, devices: int) -> None:
        self.statusBar().showMessage(f"Handover report written: {pdf}", 10_000)
        QMessageBox.information(
            self,
            "Handover report",
            f"Written for {devices} device(s):\n{pdf}\n{csv}",
        )

    def open_wizard(self) -> None:
        from station.ui.wizard import ProvisionWizard

        if self._batch_running:
            QMessageBox.information(
                self,
                "Single device",
                "A batch is being provisioned: one WiFi adapter does one "
                "thing at a time. Pause or wait for the batch first.",
            )
            return
        selected = self.homes.selected()
        if selected is None:
            QMessageBox.information(self, "Single device", "Add or select a home first.")
            return
        wizard = ProvisionWizard(self.runtime, *selected, parent=self)
        wizard.goToDevices.connect(lambda: self.tabs.setCurrentWidget(self.devices_tab))
        wizard.open()

    # -- status bar --------------------------------------------------------------------

    def _show_counts(self, online: int, total: int) -> None:
        self.devices_label.setText(f"Devices: {online} online / {total}")

    def _refresh_status(self) -> None:
        if self._closed:
            return  # a queued signal can still arrive after closeEvent
        rt = self.runtime
        radio = rt.radio
        if radio is not None:
            # What the radio's owner knows; a fresh read of the network is queued only
            # while the radio is idle, so a batch never gets an extra OS call from here
            # and the GUI thread never waits for the radio.
            radio.refresh(max_age=STATUS_REFRESH_MS / 1000)
            state = radio.state()
            self.network_label.setText(f"Network: {state.summary()}")
            self.network_label.setToolTip(
                f"Adapter {state.adapter}"
                + (f"; waiting: {', '.join(state.queued)}" if state.queued else "")
            )
        else:
            self.network_label.setText("Network: …")
        self.backend_label.setText(f"WiFi: {radio.backend.name if radio else 'none'}")
        self.backend_label.setToolTip(rt.wifi_reason)
        s = rt.settings.broker
        self.broker_label.setText(
            f"Station broker: {s.bind_host}:{rt.broker.port}, {rt.broker.clients_connected} clients"
        )
        self._refresh_followers()

    def _refresh_followers(self) -> None:
        """The homes' own brokers: how many are followed, which cannot be reached (and
        are retried); the selected home's line too. Snapshots only, no I/O."""
        if self._closed:
            return
        states = self.followers.states()
        self.homes.show_broker_state()
        label = self.home_brokers_label
        if not states:
            label.hide()
            return
        down = [st for st in states if st.state == UNREACHABLE]
        if down:
            label.setText(f"Home brokers: {len(down)} of {len(states)} not reachable")
            label.setStyleSheet("color: #b3261e")
        elif not all(st.ok for st in states):
            label.setText("Home brokers: connecting…")
            label.setStyleSheet("")
        else:
            n = len(states)
            label.setText(f"Home brokers: {n} followed" if n > 1 else "Home broker: followed")
            label.setStyleSheet("")
        label.setToolTip("\n".join(f"{', '.join(st.homes)}: {st.summary()}" for st in states))
        label.show()

    # -- closing -----------------------------------------------------------------------

    def _set_running(self, running: bool) -> None:
        self._batch_running = running
        self._refresh_status()  # "busy: provisioning batch" appears and goes at once

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._batch_running:
            answer = QMessageBox.question(
                self,
                "Provisioning is running",
                "A batch is being provisioned. Stop it and quit? The computer returns to "
                "its home WiFi first; devices already configured may still come online.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        from station.ui.wizard import ProvisionWizard

        self._closed = True
        self._timer.stop()
        for wizard in self.findChildren(ProvisionWizard):
            # Its radio job would wait for the Configure screen forever: cancel it, so
            # it takes the laptop home and frees the radio (StationRuntime.stop waits).
            wizard.reject()
        self.provision_tab.shutdown(60.0)
        # A firmware update running: no more devices started, those updating left to
        # finish by themselves, its history written before the runtime stops.
        self.devices_tab.shutdown_update(30.0)
        self.bridge.detach()
        # The followers themselves stop with the runtime (StationRuntime.stop, right
        # after the window), so a closed window gets no more of their updates.
        self.followers.remove_listener(self.bridge.push_update)
        if self.followers.on_change == self.bridge.push_follower:
            self.followers.on_change = None
        event.accept()

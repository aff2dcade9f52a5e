"""Settings: WiFi backend, setup AP name and passphrase, timeouts, broker port,
telemetry interval. Saved to the settings file; some take effect at the next start."""

from __future__ import annotations

import copy

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QSpinBox,
    QWidget,
)

from station import settings as settings_mod
from station.errors import ConfigError
from station.settings import Settings

BACKENDS = ["auto", "networkmanager", "pywifi", "netsh", "macos", "manual"]


def _spin(value: float, lo: float, hi: float, suffix: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(0)
    box.setSuffix(suffix)
    box.setValue(value)
    return box


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, parent: QWidget | None = None, save_path=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings
        self.save_path = save_path
        p, b = settings.provisioning, settings.broker
        self.backend = QComboBox()
        self.backend.addItems(BACKENDS)
        self.backend.setCurrentText(p.wifi_backend if p.wifi_backend in BACKENDS else "auto")
        self.prefix = QLineEdit(p.setup_ssid_prefix)
        self.passphrase = QLineEdit(p.setup_passphrase)
        self.connect_timeout = _spin(p.wifi_connect_timeout_s, 5, 120, " s")
        self.online_timeout = _spin(p.online_timeout_s, 10, 600, " s")
        self.interval = QSpinBox()
        self.interval.setRange(1, 3600)
        self.interval.setSuffix(" s")
        self.interval.setValue(p.telemetry_interval_s)
        self.batch = QSpinBox()
        self.batch.setRange(1, 50)
        self.batch.setValue(p.batch_size)
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(b.port or 1883)
        self.advertise = QLineEdit(b.advertise_host or "")
        self.advertise.setPlaceholderText("detect (this computer's home-network address)")
        form = QFormLayout(self)
        form.addRow("WiFi control", self.backend)
        form.addRow("Setup AP name", self.prefix)
        form.addRow("Setup AP password", self.passphrase)
        form.addRow("Join timeout", self.connect_timeout)
        form.addRow("Wait for device online", self.online_timeout)
        form.addRow("Telemetry interval", self.interval)
        form.addRow("Devices per trip", self.batch)
        form.addRow("Broker port", self.port)
        form.addRow("Broker address for devices", self.advertise)
        note = QLabel("WiFi control and the broker port take effect at the next start.")
        note.setWordWrap(True)
        form.addRow(note)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def edited(self) -> Settings:
        s = copy.deepcopy(self.settings)
        p = s.provisioning
        p.wifi_backend = self.backend.currentText()
        p.setup_ssid_prefix = self.prefix.text().strip()
        p.setup_passphrase = self.passphrase.text()
        p.wifi_connect_timeout_s = self.connect_timeout.value()
        p.online_timeout_s = self.online_timeout.value()
        p.telemetry_interval_s = self.interval.value()
        p.batch_size = self.batch.value()
        s.broker.port = self.port.value()
        s.broker.advertise_host = self.advertise.text().strip() or None
        return s

    def save(self) -> None:
        new = self.edited()
        try:
            new.validate()
            if not new.provisioning.setup_ssid_prefix:
                raise ConfigError("the setup AP name cannot be empty")
            settings_mod.save(new, self.save_path)
        except (ConfigError, OSError) as exc:
            QMessageBox.warning(self, "Settings", str(exc))
            return
        # Apply in place: the running station reads these objects.
        self.settings.provisioning.__dict__.update(new.provisioning.__dict__)
        self.settings.broker.advertise_host = new.broker.advertise_host
        self.accept()

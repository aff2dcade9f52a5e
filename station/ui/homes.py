"""Customer sites (homes): the selector above the tabs and the add/edit dialog.

The WiFi password goes to the OS keyring (station.secrets); where there is none the
dialog says so: it is kept for this run only.
"""

from __future__ import annotations

import peewee
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QWidget,
)

from station.registry import Home, RegistryError
from station.runtime import StationRuntime


def not_here(home: Home) -> str | None:
    """Why the window cannot provision this home yet (its own broker), or None."""
    if not home.broker_url:
        return None
    return (
        f"{home.name}'s devices report to its own broker ({home.broker_url}). The window "
        "provisions to this station's broker only so far; provision this home with "
        f"`station provision --home \"{home.name}\"`, which creates the devices' logins "
        "there and follows them there."
    )


class HomeDialog(QDialog):
    def __init__(
        self, runtime: StationRuntime, home: Home | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.home = home
        self.setWindowTitle("Edit home" if home else "Add home")
        self.name = QLineEdit(home.name if home else "")
        self.name.setPlaceholderText("e.g. Smith, 12 Oak Street")
        self.ssid = QLineEdit(home.wifi_ssid if home else "")
        self.ssid.setPlaceholderText("the home WiFi network name")
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        saved = runtime.secrets.home_password(home.id) if home else None
        self.password.setPlaceholderText("unchanged" if saved else "8-63 characters, or empty")
        note = QLabel(f"The password is stored in: {runtime.secrets.description}.")
        note.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow("Name", self.name)
        form.addRow("WiFi network", self.ssid)
        form.addRow("WiFi password", self.password)
        form.addRow(note)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def save(self) -> None:
        password = self.password.text()
        if password and not 8 <= len(password) <= 63:
            QMessageBox.warning(
                self,
                "WiFi password",
                "A WPA2 password has 8-63 characters (empty for an open network).",
            )
            return
        try:
            if self.home is None:
                self.home = self.runtime.registry.add_home(self.name.text(), self.ssid.text())
            else:
                if not self.name.text().strip() or not self.ssid.text():
                    raise RegistryError("a home needs a name and a WiFi network")
                self.home.name, self.home.wifi_ssid = self.name.text().strip(), self.ssid.text()
                self.home.save()
        except (RegistryError, peewee.IntegrityError) as exc:  # e.g. a duplicate name
            QMessageBox.warning(self, "Home", str(exc))
            return
        if password or self.runtime.secrets.home_password(self.home.id) is None:
            self.runtime.secrets.set_home_password(self.home.id, password)
        self.accept()


class HomeSelector(QWidget):
    """Combo box of homes plus Add/Edit; emits `changed` with the selected home id."""

    changed = Signal(object)

    def __init__(self, runtime: StationRuntime, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.combo = QComboBox()
        self.combo.setMinimumWidth(220)
        add = QPushButton("Add home…")
        self.edit = QPushButton("Edit…")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Home:"))
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.edit)
        layout.addWidget(add)
        add.clicked.connect(self.add_home)
        self.edit.clicked.connect(self.edit_home)
        self.combo.currentIndexChanged.connect(lambda _i: self.changed.emit(self.current()))
        self.reload()

    def reload(self, select: int | None = None) -> None:
        keep = select if select is not None else self.combo.currentData()
        self.combo.blockSignals(True)
        self.combo.clear()
        for home in self.runtime.registry.homes():
            self.combo.addItem(f"{home.name}  —  WiFi {home.wifi_ssid}", home.id)
        if keep is not None and (i := self.combo.findData(keep)) >= 0:
            self.combo.setCurrentIndex(i)
        self.combo.blockSignals(False)
        self.edit.setEnabled(self.combo.count() > 0)
        self.changed.emit(self.current())

    def current(self) -> Home | None:
        home_id = self.combo.currentData()
        return Home.get_or_none(Home.id == home_id) if home_id is not None else None

    def selected(self) -> tuple[Home, str] | None:
        """The home and its WiFi password, asking for the password if none is stored."""
        home = self.current()
        if home is None:
            return None
        password = self.runtime.secrets.home_password(home.id)
        if password is None:
            dialog = HomeDialog(self.runtime, home, self)
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return None
            password = self.runtime.secrets.home_password(home.id)
        return (home, password) if password is not None else None

    def add_home(self) -> None:
        dialog = HomeDialog(self.runtime, None, self)
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.home is not None:
            self.reload(select=dialog.home.id)

    def edit_home(self) -> None:
        home = self.current()
        if home is None:
            return
        if HomeDialog(self.runtime, home, self).exec() == QDialog.DialogCode.Accepted:
            self.reload(select=home.id)

"""Customer sites (homes): the selector above the tabs and the add/edit dialog.

The WiFi password goes to the OS keyring (station.secrets); where there is none the
dialog says so: it is kept for this run only. A home's devices report to this
station's embedded broker or to a broker of the home's own (a URL; its admin login
goes to the keyring too, and is never shown again). After saving, the home's broker
is checked in a thread of its own (station.followers), and what it says is a
warning, never a refusal: an installer may set a home up before its broker is there.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass

import peewee
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from station import broker_target, external_broker
from station.errors import ConfigError, StationError
from station.followers import (
    FOLLOWING,
    RECONNECTING,
    STARTING,
    FollowerState,
    warning_message,
)
from station.registry import Home, RegistryError
from station.runtime import StationRuntime
from station.ui.worker import _Relay

log = logging.getLogger(__name__)

URL_PLACEHOLDER = "mqtt://USER:PASSWORD@host:1883  or  mqtts://USER:PASSWORD@host:8883"
ERROR_STYLE = "color: #b3261e"
NOTE_STYLE = "color: #555"


class HomeDialog(QDialog):
    """Add or edit a home: name, WiFi, and where its devices report.

    Nothing is written until every field checks out; a bad URL or CA file is said in
    the dialog (the ConfigError's words) and everything typed stays as it was."""

    def __init__(
        self, runtime: StationRuntime, home: Home | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.home = home
        self.broker_changed = False  # after save: the home's broker URL changed
        self.setWindowTitle("Edit home" if home else "Add home")
        self.setMinimumWidth(620)
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
        note.setStyleSheet(NOTE_STYLE)

        # Where the devices report.
        self.embedded = QRadioButton("This station's broker (embedded)")
        self.external = QRadioButton("The home's own broker (Mosquitto with dynamic security)")
        group = QButtonGroup(self)
        group.addButton(self.embedded)
        group.addButton(self.external)
        stored_url = home.broker_url if home else None
        (self.external if stored_url else self.embedded).setChecked(True)
        report = QVBoxLayout()
        report.setSpacing(2)
        report.addWidget(self.embedded)
        report.addWidget(self.external)
        self.broker_url = QLineEdit(stored_url or "")
        self.broker_url.setPlaceholderText(URL_PLACEHOLDER)
        self.broker_url.setToolTip(
            "The admin login in the URL is moved to the OS keyring when you save; the "
            "station creates each device's login there and follows the devices there."
        )
        self.login_note = QLabel(self._login_note(stored_url))
        self.login_note.setWordWrap(True)
        self.login_note.setStyleSheet(NOTE_STYLE)
        self.ca_path = QLineEdit()
        self.ca_path.setPlaceholderText("PEM file of the CA that signed the broker's certificate")
        self.ca_button = QPushButton("Choose…")
        self.ca_button.clicked.connect(self.choose_ca)
        ca_row = QHBoxLayout()
        ca_row.addWidget(self.ca_path, 1)
        ca_row.addWidget(self.ca_button)
        self.ca_note = QLabel(
            "A CA certificate is stored for this home; choose a file only to replace it."
            if home is not None and home.broker_ca
            else "For mqtts:// only: the station and every device check the broker with it."
        )
        self.ca_note.setWordWrap(True)
        self.ca_note.setStyleSheet(NOTE_STYLE)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()

        form = QFormLayout(self)
        form.addRow("Name", self.name)
        form.addRow("WiFi network", self.ssid)
        form.addRow("WiFi password", self.password)
        form.addRow(note)
        form.addRow("Devices report to", report)
        form.addRow("Broker URL", self.broker_url)
        form.addRow("", self.login_note)
        self.ca_label = QLabel("CA certificate")
        form.addRow(self.ca_label, ca_row)
        form.addRow("", self.ca_note)
        form.addRow(self.error)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.save_button = buttons.button(QDialogButtonBox.StandardButton.Save)
        self.embedded.toggled.connect(self._update)
        self.broker_url.textChanged.connect(self._update)
        self._update()

    def _login_note(self, url: str | None) -> str:
        secrets = self.runtime.secrets
        keep = "the OS keyring" if secrets.persistent else "memory for this run (no OS keyring)"
        try:
            target = broker_target.parse(url) if url else None
        except ConfigError:
            target = None
        if target is not None and secrets.broker_login(target.key) is not None:
            return (
                f"The admin login for this broker is kept in {keep}. Type "
                "USER:PASSWORD@ in the URL only to change it."
            )
        return f"Give the broker's admin login once in the URL: it is moved to {keep}."

    def _update(self, *_a: object) -> None:
        external = self.external.isChecked()
        tls = self.broker_url.text().strip().lower().startswith("mqtts://")
        widgets: tuple[QWidget, ...] = (self.broker_url, self.login_note)
        for w in widgets:
            w.setEnabled(external)
        widgets = (self.ca_label, self.ca_path, self.ca_button, self.ca_note)
        for w in widgets:
            w.setEnabled(external and tls)

    def choose_ca(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(
            self,
            "CA certificate of the home's broker",
            self.ca_path.text(),
            "PEM certificates (*.pem *.crt *.cer);;All files (*)",
        )
        if path:
            self.ca_path.setText(path)

    def _refuse(self, text: str, field: QWidget | None = None) -> None:
        """Say what is wrong, in the dialog; every field keeps what was typed."""
        self.error.setText(_masked(text, self.broker_url.text()))
        self.error.show()
        if field is not None:
            field.setFocus()

    def save(self) -> None:
        self.error.hide()
        name, ssid, password = self.name.text().strip(), self.ssid.text(), self.password.text()
        if password and not 8 <= len(password) <= 63:
            self._refuse(
                "A WPA2 password has 8-63 characters (empty for an open network).",
                self.password,
            )
            return
        if not name or not ssid:
            where = self.ssid if name else self.name
            self._refuse("A home needs a name and a WiFi network.", where)
            return
        url = self.broker_url.text().strip() if self.external.isChecked() else ""
        if self.external.isChecked() and not url:
            self._refuse(
                "Give the broker's URL (" + URL_PLACEHOLDER.split("  or")[0] + "), or choose "
                "this station's broker.",
                self.broker_url,
            )
            return
        try:
            target = broker_target.parse(url) if url else None
        except ConfigError as exc:
            self._refuse(str(exc), self.broker_url)
            return
        ca_path = self.ca_path.text().strip()
        ca: str | None = None
        if target is not None and target.tls:
            if ca_path:
                try:
                    ca = broker_target.load_ca(ca_path)
                except ConfigError as exc:
                    self._refuse(str(exc), self.ca_path)
                    return
            elif self.home is not None and (self.home.broker_url or "").startswith("mqtts://"):
                ca = self.home.broker_ca  # kept
        elif ca_path and target is not None:
            self._refuse(
                f"A CA certificate is for an mqtts:// (TLS) broker, not {target.url}.",
                self.ca_path,
            )
            return
        # Everything checks out: the login to the keyring, then the registry.
        try:
            stored = external_broker.remember(self.runtime.secrets, url) if target else None
        except StationError as exc:  # a user without a password, say
            self._refuse(str(exc), self.broker_url)
            return
        new_url = stored.url if stored is not None else None
        try:
            if self.home is None:
                self.home = self.runtime.registry.add_home(
                    name, ssid, broker_url=new_url, broker_ca=ca
                )
                self.broker_changed = new_url is not None
            else:
                old_url = self.home.broker_url or None
                if name != self.home.name:
                    self.home.name = name
                    self.home.save()
                self.home = self.runtime.registry.edit_home(
                    self.home, wifi_ssid=ssid, broker_url=new_url, broker_ca=ca
                )
                self.broker_changed = old_url != new_url
        except (RegistryError, peewee.IntegrityError) as exc:  # e.g. a duplicate name
            self._refuse(str(exc), self.name)
            return
        if password or self.runtime.secrets.home_password(self.home.id) is None:
            self.runtime.secrets.set_home_password(self.home.id, password)
        if new_url:
            log.info("home %s: devices report to %s", self.home.name, new_url)
        self.accept()


_LOGIN = re.compile(r"([^:/@\s]+):([^@/\s]+)@")


def _masked(text: str, typed: str) -> str:
    """`text` without the password of any USER:PASSWORD@ in `typed` (a message may quote
    a URL it could not parse, login and all)."""
    for user, password in _LOGIN.findall(typed):
        text = text.replace(f"{user}:{password}@", f"{user}:***@")
    return text


@dataclass(frozen=True)
class CheckResult:
    home_id: int
    home: str
    url: str | None
    text: str  # the check's words, as `station homes add --broker` prints them
    ok: bool
    devices: int  # provisioned devices that still report to the former broker
    thread: str  # where the check ran (never the GUI thread)

    def notice(self) -> str:
        lines = [] if self.ok else [self.text]
        if not self.ok and "no admin login" in self.text:
            lines.append(
                "In this window: Edit… the home and give the broker URL once with its "
                "login, USER:PASSWORD@host:port."
            )
        if self.devices:
            lines.append(
                f"Its {self.devices} provisioned device(s) report where they were "
                "configured until they are moved (station fleet rehome, no visit) or "
                "provisioned again."
            )
        return "\n\n".join(lines)


class BrokerCheck(_Relay):
    """A home's broker checked after saving, in a thread of its own (it may take
    seconds: connect, admin login, dynamic security); the result comes as `done`."""

    done = Signal(object)  # CheckResult

    def __init__(self, runtime: StationRuntime, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.threads: list[threading.Thread] = []

    def start(self, home: Home, broker_changed: bool) -> None:
        followers = self.runtime.follow_external_brokers()  # returns at once
        registry = self.runtime.registry
        home_id, name, url = home.id, home.name, home.broker_url

        def body() -> None:
            here = threading.current_thread().name
            devices = 0
            try:
                text = followers.check(registry.home(home_id))
                ok = not text.startswith("Warning")
                if broker_changed:
                    devices = registry.home(home_id).devices.count()
            except Exception as exc:
                log.exception("checking the broker of %s failed", name)
                text, ok = warning_message(str(exc) or type(exc).__name__), False
            finally:
                db = registry.db
                if db.thread_safe and not db.is_closed():
                    db.close()
            (log.info if ok else log.warning)("home %s: %s", name, text)
            self._emit("done", CheckResult(home_id, name, url, text, ok, devices, here))

        thread = threading.Thread(target=body, name="broker-check", daemon=True)
        self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        thread.start()


def state_text(state: FollowerState | None, url: str | None) -> tuple[str, str]:
    """The selected home's broker in words, and its colour."""
    if not url:
        return "Devices report to this station's broker", NOTE_STYLE
    if state is None or state.state == STARTING:
        return f"Broker {url}: connecting…", NOTE_STYLE
    if state.state == FOLLOWING:
        return f"Broker {url}: following its devices", "color: #1b6e20"
    if state.state == RECONNECTING:
        return f"Broker {url}: connection lost, reconnecting…", ERROR_STYLE
    retry = f", retrying in {state.next_try_s:.0f} s" if state.next_try_s is not None else ""
    return f"Broker {url}: not reachable{retry} (hover for why)", ERROR_STYLE


class HomeSelector(QWidget):
    """Combo box of homes plus Add/Edit, and where the selected home's devices report;
    emits `changed` with the selected home."""

    changed = Signal(object)
    checked = Signal(object)  # CheckResult, once a saved home's broker was checked

    URL_ROLE = Qt.ItemDataRole.UserRole + 1

    def __init__(self, runtime: StationRuntime, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.combo = QComboBox()
        self.combo.setMinimumWidth(220)
        add = QPushButton("Add home…")
        self.add_button = add
        self.edit = QPushButton("Edit…")
        self.broker_state = QLabel()
        self.broker_state.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # A long line never widens the window: it is cut, the tooltip has it all.
        self.broker_state.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.check = BrokerCheck(runtime, self)
        self.check.done.connect(self._on_checked)
        self.notice: QMessageBox | None = None  # the last check's warning, if any
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Home:"))
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.edit)
        layout.addWidget(add)
        layout.addSpacing(12)
        layout.addWidget(self.broker_state, 1)
        add.clicked.connect(self.add_home)
        self.edit.clicked.connect(self.edit_home)
        self.combo.currentIndexChanged.connect(self._on_index)
        self.reload()

    def _on_index(self, _i: int) -> None:
        self.show_broker_state()
        self.changed.emit(self.current())

    def reload(self, select: int | None = None) -> None:
        keep = select if select is not None else self.combo.currentData()
        self.combo.blockSignals(True)
        self.combo.clear()
        for home in self.runtime.registry.homes():
            self.combo.addItem(f"{home.name}  —  WiFi {home.wifi_ssid}", home.id)
            self.combo.setItemData(self.combo.count() - 1, home.broker_url, self.URL_ROLE)
        if keep is not None and (i := self.combo.findData(keep)) >= 0:
            self.combo.setCurrentIndex(i)
        self.combo.blockSignals(False)
        self.edit.setEnabled(self.combo.count() > 0)
        self.show_broker_state()
        self.changed.emit(self.current())

    def current_url(self) -> str | None:
        """The selected home's broker URL (as of the last reload), None: embedded."""
        if self.combo.currentIndex() < 0:
            return None
        return self.combo.currentData(self.URL_ROLE) or None

    def show_broker_state(self) -> None:
        """Where the selected home's devices report, and how that broker is (no I/O)."""
        if self.combo.currentIndex() < 0:
            self.broker_state.setText("")
            return
        url = self.current_url()
        followers = self.runtime.followers
        state = followers.state(url) if followers is not None and url else None
        text, style = state_text(state, url)
        self.broker_state.setText(text)
        self.broker_state.setStyleSheet(style)
        self.broker_state.setToolTip(state.summary() if state is not None else text)

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
            self._saved(dialog)
            password = self.runtime.secrets.home_password(home.id)
        return (home, password) if password is not None else None

    def add_home(self) -> None:
        dialog = HomeDialog(self.runtime, None, self)
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.home is not None:
            self.reload(select=dialog.home.id)
            self._saved(dialog)

    def edit_home(self) -> None:
        home = self.current()
        if home is None:
            return
        dialog = HomeDialog(self.runtime, home, self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.reload(select=home.id)
            self._saved(dialog)

    def _saved(self, dialog: HomeDialog) -> None:
        """A home was saved: its broker is followed (or no longer) and checked, off this
        thread."""
        home = dialog.home
        if home is None:
            return
        if home.broker_url or dialog.broker_changed:
            if home.broker_url:
                self.broker_state.setText(f"Broker {home.broker_url}: checking…")
                self.broker_state.setStyleSheet(NOTE_STYLE)
            self.check.start(home, dialog.broker_changed)

    def _on_checked(self, result: CheckResult) -> None:
        self.show_broker_state()
        self.checked.emit(result)
        text = result.notice()
        if not text:
            return
        if self.notice is not None:
            self.notice.close()
        box = QMessageBox(
            QMessageBox.Icon.Warning if not result.ok else QMessageBox.Icon.Information,
            f"Home {result.home}",
            text,
            QMessageBox.StandardButton.Ok,
            self,
        )
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _r: setattr(self, "notice", None))
        self.notice = box
        box.setWindowModality(Qt.WindowModality.NonModal)  # a warning, not a question
        box.show()

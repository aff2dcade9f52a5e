"""The home dialog's broker field: an mqtts:// broker with its CA file (a real TLS
Mosquitto signed by a throwaway CA), what the dialog refuses and how (in the dialog,
the ConfigError's words, nothing typed lost, nothing written), and what editing shows
of a stored broker (never its login)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mosquitto import Mosquitto
from PySide6.QtWidgets import QDialog
from tls_ca import TestCA

from station.ui.homes import HomeDialog, HomeSelector

ADMIN = ("admin", "tls-admin-pw")


@pytest.fixture
def rt(empty_runtime, memory_keyring):
    empty_runtime.secrets = type(empty_runtime.secrets)()  # sees the memory keyring
    return empty_runtime


@pytest.fixture
def ca(tmp_path) -> TestCA:
    return TestCA(tmp_path / "ca")


@pytest.fixture
def tls_mosq(tmp_path, ca) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "mosquitto", dynsec_admin=ADMIN, tls=ca.issue("broker")) as m:
        yield m


def _fill(dialog: HomeDialog, url: str, ca_path: str = "") -> None:
    dialog.name.setText("Smith")
    dialog.ssid.setText("SmithWiFi")
    dialog.password.setText("smith-wifi-pass")
    dialog.external.setChecked(True)
    dialog.broker_url.setText(url)
    dialog.ca_path.setText(ca_path)


def _typed(dialog: HomeDialog) -> tuple[str, ...]:
    return (
        dialog.name.text(),
        dialog.ssid.text(),
        dialog.password.text(),
        dialog.broker_url.text(),
        dialog.ca_path.text(),
    )


def test_an_mqtts_home_with_its_ca_file_is_saved_and_its_broker_checked(
    qtbot, rt, memory_keyring, tls_mosq, ca, tmp_path
):
    ca_file = tmp_path / "home-ca.pem"
    ca_file.write_text("issued by the installer's company\n" + ca.pem)
    selector = HomeSelector(rt)
    qtbot.addWidget(selector)
    dialog = HomeDialog(rt, None, selector)
    url = f"mqtts://{ADMIN[0]}:{ADMIN[1]}@127.0.0.1:{tls_mosq.port}"
    _fill(dialog, url)
    assert dialog.ca_path.isEnabled() and dialog.ca_button.isEnabled()  # mqtts:// → CA
    dialog.ca_path.setText(str(ca_file))
    dialog.save()
    assert dialog.result() == QDialog.DialogCode.Accepted, dialog.error.text()
    home = rt.registry.home("Smith")
    assert home.broker_url == f"mqtts://127.0.0.1:{tls_mosq.port}"
    assert home.broker_ca == ca.pem  # the checked PEM, surrounding text dropped
    assert rt.secrets.broker_login(f"broker:{home.broker_url}") == ADMIN
    assert ADMIN[1] not in (home.broker_url or "")
    selector.reload(select=home.id)
    with qtbot.waitSignal(selector.checked, timeout=60_000) as blocker:
        selector._saved(dialog)
    result = blocker.args[0]
    assert result.ok, result.text
    assert result.text == (
        f"Broker {home.broker_url}: reachable, admin login and dynamic security work."
    )
    assert result.thread == "broker-check"
    qtbot.waitUntil(lambda: "following its devices" in selector.broker_state.text(), timeout=10_000)
    # Editing shows the broker without its login, and keeps the CA unless replaced.
    edit = HomeDialog(rt, home, selector)
    assert edit.external.isChecked() and edit.broker_url.text() == home.broker_url
    assert "kept in the OS keyring" in edit.login_note.text()
    assert "A CA certificate is stored" in edit.ca_note.text() and edit.ca_path.text() == ""
    edit.save()
    assert edit.result() == QDialog.DialogCode.Accepted, edit.error.text()
    assert rt.registry.home("Smith").broker_ca == ca.pem
    assert edit.broker_changed is False


@pytest.mark.parametrize(
    ("url", "ca_file", "says"),
    [
        ("mqtt//admin:pw@broker.local", None, "unknown scheme"),
        ("mqtt://admin:pw@broker.local:http", None, "Port could not be cast"),
        ("ftp://admin:pw@broker.local", None, "unknown scheme"),
        ("mqtt://admin:pw@broker.local/path", None, "only scheme, login, host and port"),
        ("mqtt://admin@broker.local", None, "names the user 'admin' but no password"),
        ("", None, "Give the broker's URL"),
        ("mqtts://admin:pw@broker.local", "missing.pem", "no such file"),
        ("mqtts://admin:pw@broker.local", "not-a-cert.pem", "no PEM certificate"),
        ("mqtt://admin:pw@broker.local", "not-a-cert.pem", "is for an mqtts:// (TLS) broker"),
    ],
)
def test_bad_broker_input_is_said_in_the_dialog_and_nothing_is_lost(
    qtbot, rt, memory_keyring, tmp_path, url, ca_file, says
):
    (tmp_path / "not-a-cert.pem").write_text("hello\n")
    dialog = HomeDialog(rt)
    qtbot.addWidget(dialog)
    _fill(dialog, url, str(tmp_path / ca_file) if ca_file else "")
    before = _typed(dialog)
    dialog.save()
    assert dialog.result() != QDialog.DialogCode.Accepted
    assert not dialog.error.isHidden() and says in dialog.error.text(), dialog.error.text()
    assert "pw@" not in dialog.error.text()  # a password is never shown back
    assert _typed(dialog) == before and dialog.external.isChecked()
    assert rt.registry.homes() == [] and memory_keyring.items == {}  # nothing written


def test_an_embedded_home_needs_no_broker_fields(qtbot, rt):
    dialog = HomeDialog(rt)
    qtbot.addWidget(dialog)
    assert dialog.embedded.isChecked()
    assert not dialog.broker_url.isEnabled() and not dialog.ca_path.isEnabled()
    dialog.name.setText("Jones")
    dialog.ssid.setText("JonesWiFi")
    dialog.broker_url.setText("mqtt://ignored:pw@nowhere")  # not chosen: not used
    dialog.save()
    assert dialog.result() == QDialog.DialogCode.Accepted, dialog.error.text()
    home = rt.registry.home("Jones")
    assert home.broker_url is None and home.broker_ca is None
    assert dialog.broker_changed is False

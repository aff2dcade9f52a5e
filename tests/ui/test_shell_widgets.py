"""The main window's own widgets: log panel, home selector/dialog, settings dialog."""

from __future__ import annotations

import json
import logging
import threading

from PySide6.QtWidgets import QDialog

from station import settings as settings_mod
from station.settings import Settings
from station.ui.homes import HomeDialog, HomeSelector
from station.ui.log_panel import LogPanel, QtLogHandler
from station.ui.settings_dialog import SettingsDialog


def test_log_panel_gets_records_from_other_threads_and_filters(qtbot):
    handler = QtLogHandler()
    panel = LogPanel(handler)
    qtbot.addWidget(panel)
    logger = logging.getLogger("station.test.panel")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        t = threading.Thread(target=lambda: [logger.info("from a worker %d", i) for i in range(50)])
        t.start()
        t.join()
        logger.debug("hidden at Info")
        logger.warning("device esp32_dht11_007 refused")
        qtbot.waitUntil(lambda: "from a worker 49" in panel.view.toPlainText())
        text = panel.view.toPlainText()
        assert "from a worker 49" in text and "hidden at Info" not in text
        panel.search.setText("esp32_dht11_007")
        assert panel.view.toPlainText().count("\n") == 0
        assert "refused" in panel.view.toPlainText()
        panel.search.clear()
        panel.level.setCurrentIndex(0)  # Debug
        assert "hidden at Info" in panel.view.toPlainText()
    finally:
        logger.removeHandler(handler)


def test_add_home_puts_password_in_keyring(qtbot, empty_runtime, memory_keyring):
    empty_runtime.secrets = type(empty_runtime.secrets)()  # sees the memory keyring
    selector = HomeSelector(empty_runtime)
    qtbot.addWidget(selector)
    dialog = HomeDialog(empty_runtime, None, selector)
    dialog.name.setText("Smith")
    dialog.ssid.setText("My Home WiFi")
    dialog.password.setText("short")
    dialog.password.setText("correct horse 42")
    dialog.save()
    assert dialog.result() == QDialog.DialogCode.Accepted
    selector.reload(select=dialog.home.id)
    home, password = selector.selected()
    assert (home.name, home.wifi_ssid, password) == ("Smith", "My Home WiFi", "correct horse 42")
    assert list(memory_keyring.items.values()) == ["correct horse 42"]
    assert "Smith" in selector.combo.currentText()


def test_settings_dialog_saves_and_applies(qtbot, tmp_path):
    settings = Settings()
    path = tmp_path / "settings.json"
    dialog = SettingsDialog(settings, save_path=path)
    qtbot.addWidget(dialog)
    dialog.online_timeout.setValue(90)
    dialog.batch.setValue(5)
    dialog.backend.setCurrentText("manual")
    dialog.save()
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert settings.provisioning.online_timeout_s == 90 and settings.provisioning.batch_size == 5
    saved = settings_mod.load(path)
    assert saved.provisioning.wifi_backend == "manual"
    assert json.loads(path.read_text())["provisioning"]["batch_size"] == 5


def test_settings_dialog_refuses_bad_values(qtbot, tmp_path, monkeypatch):
    warnings = []
    monkeypatch.setattr(
        "station.ui.settings_dialog.QMessageBox.warning", lambda *a: warnings.append(a[2])
    )
    settings = Settings()
    dialog = SettingsDialog(settings, save_path=tmp_path / "s.json")
    qtbot.addWidget(dialog)
    dialog.passphrase.setText("short")
    dialog.save()
    assert warnings and "8-63" in warnings[0]
    assert not (tmp_path / "s.json").exists()
    assert settings.provisioning.setup_passphrase == "12345678"

"""Placeholder main window until the GUI issue: shows that the station is up."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = QMainWindow()
    window.setWindowTitle("ESP32 Provisioning Station")
    label = QLabel(
        "ESP32 Provisioning Station\n\nThe GUI is being built. "
        "Use `station broker` and `station devices` meanwhile."
    )
    label.setMargin(24)
    window.setCentralWidget(label)
    window.resize(640, 360)
    window.show()
    return app.exec()

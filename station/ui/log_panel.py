"""The station's logging in a panel, filterable by level and text.

A logging.Handler hands records to the GUI thread through a signal (records come
from the broker, ingest and worker threads); the panel keeps the last lines only.
"""

from __future__ import annotations

import logging
from collections import deque

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

MAX_LINES = 5000
LEVELS = [
    ("Debug", logging.DEBUG),
    ("Info", logging.INFO),
    ("Warnings", logging.WARNING),
    ("Errors", logging.ERROR),
]


class _Emitter(QObject):
    record = Signal(int, str)


class QtLogHandler(logging.Handler):
    """Thread-safe: emitting a signal from any thread queues it to the GUI thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.emitter = _Emitter()
        self.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.emitter.record.emit(record.levelno, self.format(record))
        except Exception:  # never let logging break the caller
            self.handleError(record)


class LogPanel(QWidget):
    def __init__(self, handler: QtLogHandler, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lines: deque[tuple[int, str]] = deque(maxlen=MAX_LINES)
        self.level = QComboBox()
        for label, level in LEVELS:
            self.level.addItem(label, level)
        self.level.setCurrentIndex(1)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Filter log lines…")
        self.search.setClearButtonEnabled(True)
        self.view = QPlainTextEdit()
        self.view.setReadOnly(True)
        self.view.setMaximumBlockCount(MAX_LINES)
        self.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        top = QHBoxLayout()
        top.addWidget(self.level)
        top.addWidget(self.search, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.view)
        handler.emitter.record.connect(self.add)
        self.level.currentIndexChanged.connect(self._refilter)
        self.search.textChanged.connect(self._refilter)

    def _accepts(self, level: int, text: str) -> bool:
        needle = self.search.text().strip().lower()
        return level >= self.level.currentData() and (not needle or needle in text.lower())

    def add(self, level: int, text: str) -> None:
        self.lines.append((level, text))
        if self._accepts(level, text):
            self.view.appendPlainText(text)

    def _refilter(self) -> None:
        shown = [text for level, text in self.lines if self._accepts(level, text)]
        self.view.setPlainText("\n".join(shown))
        self.view.verticalScrollBar().setValue(self.view.verticalScrollBar().maximum())

"""File → Export handover report: the selected home's report, written off the GUI
thread (the registry read and the PDF take ~0.1-0.3 s for 3-50 devices, longer on a
remote PostgreSQL) and announced when done."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from station.errors import StationError
from station.registry import Home

if TYPE_CHECKING:
    from station.runtime import StationRuntime

log = logging.getLogger(__name__)


class HandoverExport(QObject):
    """export(home, pdf_path): writes <name>.pdf and <name>.csv beside it; `finished`
    (pdf, csv, device count) or `failed` (the message) arrive in the GUI thread."""

    finished = Signal(str, str, int)
    failed = Signal(str)
    _done = Signal(str, str, int)
    _error = Signal(str)

    def __init__(self, runtime: StationRuntime, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self._thread: threading.Thread | None = None
        # Emitted from the worker thread: queued to this object's (the GUI) thread.
        self._done.connect(self.finished.emit)
        self._error.connect(self.failed.emit)

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def export(self, home: Home, pdf_path: str | Path) -> None:
        pdf = Path(pdf_path).with_suffix(".pdf")
        csv = pdf.with_suffix(".csv")
        host, port = self.runtime.broker_address()
        registry = self.runtime.registry

        def work() -> None:
            from station.ui.handover_pdf import export_handover

            try:
                report = export_handover(
                    registry,
                    home.id,
                    csv_path=csv,
                    pdf_path=pdf,
                    station_broker=f"{host}:{port}",
                )
            except (StationError, OSError) as exc:
                self._error.emit(str(exc))
                return
            except Exception as exc:  # a bug: said, logged, never a dead thread
                log.exception("handover report for %s failed", home.name)
                self._error.emit(f"the report could not be written: {exc}")
                return
            log.info("handover report for %s: %s, %s", home.name, pdf, csv)
            self._done.emit(str(pdf), str(csv), len(report.rows))

        self._thread = threading.Thread(target=work, name="handover-export", daemon=True)
        self._thread.start()

"""The handover PDF (station/ui/handover_pdf.py), drawn offscreen: the QR code drawn is
exactly segno's code of "chip id + node name", module by module; pages for the table
and the labels; an empty home."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor, QImage, QPainter

from station import handover
from station.handover import HandoverReport, HandoverRow, qr_matrix
from station.ui import handover_pdf


def row(n: int, **kw) -> HandoverRow:
    fields = dict(
        node_name=f"esp32_dht11_{n:03d}",
        name=f"Sensor {n}",
        location="Living room, on the bookshelf left of the television, second shelf",
        chip_id=f"A4CF12{n:06X}",
        mac="A4:CF:12:00:00:01",
        model="esp32-dht11",
        firmware="1.0.0",
        ip=None,
        state="online",
        rssi=-55,
        temperature=21.5,
        humidity=40.0,
        last_seen=None,
        first_reading=dt.datetime(2026, 12, 1, 9, 0),
        last_reading=dt.datetime(2026, 12, 2, 9, 0),
        readings=100,
        broker="this station's broker (192.168.1.20:1883)",
        provisioned_at=dt.datetime(2026, 12, 1, 8, 55),
        provisioning_s=9.5,
        attempts=1,
    )
    fields.update(kw)
    return HandoverRow(**fields)  # type: ignore[arg-type]


def report(rows: list[HandoverRow]) -> HandoverReport:
    return HandoverReport(
        home="Smith",
        home_wifi="SmithWiFi",
        created=dt.datetime(2026, 12, 2, 10, 0),
        station="laptop-1",
        broker="this station's broker (192.168.1.20:1883)",
        rows=rows,
    )


def pages_in(path) -> int:
    return len(re.findall(rb"/Type\s*/Page(?!s)", path.read_bytes()))


def test_the_qr_code_drawn_is_the_code_of_chip_id_and_node_name():
    handover_pdf.ensure_app()
    r = row(7)
    assert r.qr_text == "A4CF12000007 esp32_dht11_007"  # chip id, a space, node name
    matrix = qr_matrix(r.qr_text)
    side = 8 * (len(matrix) + 2 * handover_pdf.QUIET_ZONE)  # 8 px a module
    image = QImage(side + 20, side + 20, QImage.Format.Format_RGB32)
    image.fill(QColor("red"))  # outside the code: neither dark nor light
    painter = QPainter(image)
    handover_pdf.draw_qr(painter, QRectF(10, 10, side, side), r.qr_text)
    painter.end()

    def dark(row_: int, col: int) -> bool:
        q = handover_pdf.QUIET_ZONE
        px = image.pixelColor(10 + (q + col) * 8 + 4, 10 + (q + row_) * 8 + 4)
        assert px.name() in ("#000000", "#ffffff"), px.name()
        return px.name() == "#000000"

    n = len(matrix)
    drawn = [[dark(i, j) for j in range(n)] for i in range(n)]
    assert drawn == matrix
    # The quiet zone is light all round.
    q = handover_pdf.QUIET_ZONE
    assert all(not dark(-q, j) and not dark(n + q - 1, j) for j in range(-q, n + q))
    # segno agrees that this matrix is the code of exactly that text.
    import segno

    assert segno.make(r.qr_text, error="m", micro=False).matrix == tuple(
        bytearray(1 if m else 0 for m in line) for line in matrix
    )


def test_pages_for_the_table_and_the_labels(tmp_path):
    rows = [
        row(n, failures=(handover.Failure(None, "configure: refused " * 6),)) for n in range(1, 17)
    ]
    path = tmp_path / "r.pdf"
    pages = handover_pdf.write_pdf(report(rows), path)
    # 15 labels a page: 16 devices need two label pages; the long rows take 2 table pages.
    assert pages == pages_in(path) == 4
    assert handover_pdf.write_pdf(report(rows[:3]), path) == pages_in(path) == 2


def test_an_empty_home_is_one_page(tmp_path):
    path = tmp_path / "r.pdf"
    assert handover_pdf.write_pdf(report([]), path) == pages_in(path) == 1


def test_an_unwritable_pdf_is_a_clear_error(tmp_path):
    with pytest.raises(handover.ReportError, match="cannot write"):
        handover_pdf.write_pdf(report([row(1)]), "/proc/handover.pdf")


def test_export_handover_is_the_one_call_for_the_gui(tmp_path, registry):
    home = registry.add_home("Smith", "SmithWiFi")
    dev = registry.register_device(home=home).device
    registry.describe_device(dev, name="Hall", location="by the door")
    got = handover_pdf.export_handover(
        registry,
        home.id,
        csv_path=tmp_path / "s.csv",
        pdf_path=tmp_path / "s.pdf",
        station_broker="192.168.1.20:1883",
    )
    assert [(r.name, r.location, r.state) for r in got.rows] == [("Hall", "by the door", "pending")]
    assert "by the door" in (tmp_path / "s.csv").read_text(encoding="utf-8-sig")
    assert pages_in(tmp_path / "s.pdf") == 2


def test_the_pdfs_own_qt_application_lets_the_process_show_widgets_later():
    """`station report` starts Qt itself when none runs; a process that goes on to make
    a widget (the window, a test run) must not abort ("Cannot create a QWidget without
    QApplication"), which a bare QGuiApplication made it do (the full test run died
    in the GUI tests after this module)."""
    import os
    import subprocess
    import sys

    code = (
        "from station.ui.handover_pdf import ensure_app; ensure_app()\n"
        "from PySide6.QtWidgets import QLabel; QLabel('x'); print('widget ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "widget ok"

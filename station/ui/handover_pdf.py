"""The handover report as a printable A4 PDF (Qt's own PDF writer, no other dependency):
a title block, the device table (continued over pages, its header repeated), and pages
of QR labels to cut out and stick on each device (chip id + node name).

    report = station.handover.gather(registry, home, station_broker="192.168.1.20:1883")
    pages = write_pdf(report, "smith-handover.pdf")

Works without a screen: with no Qt application running it starts a QGuiApplication on
the offscreen platform (the CLI); inside the GUI it uses the running one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QMarginsF, QRectF, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QGuiApplication,
    QPageLayout,
    QPageSize,
    QPaintDevice,
    QPainter,
    QPdfWriter,
    QPen,
)

from station.handover import (
    HandoverReport,
    HandoverRow,
    ReportError,
    gather,
    qr_matrix,
    write_csv,
)
from station.registry import Home, Registry

DPI = 300
PAGE_W_MM, PAGE_H_MM = 210.0, 297.0
MARGIN_MM = 14.0
QUIET_ZONE = 4  # light modules around a QR code (ISO/IEC 18004)

# Labels: 3 x 5 per page, each 60 x 53 mm with a dashed cut line; the QR code is 30 mm
# (about 0.8 mm a module for a version-3 code: a phone reads it from 20 cm away).
LABEL_COLS, LABEL_ROWS = 3, 5
LABEL_W_MM, LABEL_H_MM = 60.0, 53.0
LABEL_QR_MM = 30.0

STATE_COLOURS = {
    "online": "#1b6e20",
    "offline": "#6b6b6b",
    "failed": "#b00020",
    "pending": "#8a5a00",
}

_app: QGuiApplication | None = None


def ensure_app() -> None:
    """A Qt application for fonts and painting: the running one, else an offscreen one."""
    global _app
    if QGuiApplication.instance() is not None:
        return
    # No screen needed: offscreen unless the user chose a platform (the process's
    # environment is left as it is).
    argv = (
        ["station"] if os.environ.get("QT_QPA_PLATFORM") else ["station", "-platform", "offscreen"]
    )
    # A QApplication, not a bare QGuiApplication: the process may show widgets later
    # (the window, a test run), and Qt aborts on a widget made under a QGuiApplication.
    from PySide6.QtWidgets import QApplication

    _app = QApplication(argv)


def mm(value: float) -> float:
    return value * DPI / 25.4


def font(size: float, *, bold: bool = False, italic: bool = False, mono: bool = False) -> QFont:
    f = QFont("DejaVu Sans Mono" if mono else "DejaVu Sans")
    f.setStyleHint(QFont.StyleHint.Monospace if mono else QFont.StyleHint.SansSerif)
    f.setPointSizeF(size)
    f.setBold(bold)
    f.setItalic(italic)
    return f


# -- the device table -----------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One line of text in a cell: wrapped to the column, in its font and colour."""

    text: str
    font: QFont
    colour: str = "#000000"


def _when(ts) -> str:
    return ts.strftime("%Y-%m-%d %H:%M") if ts is not None else "–"


def _cells(row: HandoverRow, top_broker: str) -> list[list[Line]]:
    body, small, bold = font(8), font(7), font(8, bold=True)
    mono = font(7.5, mono=True)
    dates = font(7.5)
    grey = "#555555"
    device = [Line(row.name or row.node_name, bold)]
    device.append(Line(row.location or "no location noted", font(8, italic=True), grey))
    if row.name:
        device.append(Line(row.node_name, mono))
    chip = [
        Line(row.chip_id or "chip id unknown", mono),
        Line(row.mac or "MAC unknown", mono),
    ]
    if row.model:
        chip.append(Line(row.model, small, grey))
    signal = [
        Line(row.state, font(8, bold=True), STATE_COLOURS.get(row.state, "#000000")),
        Line(f"fw {row.firmware}" if row.firmware else "fw unknown", body),
        Line(f"{row.rssi} dBm" if row.rssi is not None else "RSSI –", body),
    ]
    values = []
    if row.temperature is not None:
        values.append(f"{row.temperature:g}\u00a0°C")
    if row.humidity is not None:
        values.append(f"{row.humidity:g}\u00a0%")
    readings = (
        [
            Line(f"first {_when(row.first_reading)}", dates),
            Line(f"last {_when(row.last_reading)}", dates),
            Line(f"{row.readings} stored", small),
        ]
        if row.readings
        else [Line("no reading stored yet", body, grey)]
    )
    if values:
        readings.append(Line("now " + ", ".join(values), small))
    provisioned = [
        Line(_when(row.provisioned_at) if row.provisioned_at else "not provisioned", dates),
        Line(
            (f"{row.provisioning_s:g} s, " if row.provisioning_s is not None else "")
            + (f"{row.attempts} attempt" + ("s" if row.attempts != 1 else "")),
            small,
        ),
    ]
    if row.broker != top_broker:
        provisioned.append(Line(row.broker, small, grey))
    failures = [Line(str(f), small, "#b00020") for f in row.failures] or [Line("none", body, grey)]
    return [device, chip, signal, readings, provisioned, failures]


# (title, width in mm); the widths add up to the text width (210 - 2 x 14 = 182 mm).
COLUMNS: list[tuple[str, float]] = [
    ("Device / location", 37.0),
    ("Chip id / MAC", 30.0),
    ("State", 19.0),
    ("Readings (UTC)", 35.0),
    ("Provisioned (UTC)", 27.0),
    ("Failures and reasons", 34.0),
]
CELL_PAD_MM = 1.2
FLAGS = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWrapAnywhere)
WRAP = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap)


def _line_height(device: QPaintDevice, line: Line, width: float) -> float:
    fm = QFontMetricsF(line.font, device)
    # Word wrap first; a word longer than the column (a node name) breaks anywhere.
    flags = WRAP if all(fm.horizontalAdvance(w) <= width for w in line.text.split()) else FLAGS
    return fm.boundingRect(QRectF(0, 0, width, 1e6), flags, line.text).height()


def _cell_height(device: QPaintDevice, lines: list[Line], width: float) -> float:
    return sum(_line_height(device, ln, width) for ln in lines)


def _draw_cell(p: QPainter, lines: list[Line], x: float, y: float, width: float) -> None:
    for ln in lines:
        h = _line_height(p.device(), ln, width)
        fm = QFontMetricsF(ln.font, p.device())
        flags = WRAP if all(fm.horizontalAdvance(w) <= width for w in ln.text.split()) else FLAGS
        p.setFont(ln.font)
        p.setPen(QColor(ln.colour))
        p.drawText(QRectF(x, y, width, h + 1), flags, ln.text)
        y += h


# -- QR codes -------------------------------------------------------------------------


def draw_qr(p: QPainter, rect: QRectF, text: str) -> None:
    """The QR code of `text` filling the square `rect`, quiet zone included: dark
    modules as filled rectangles (each horizontal run as one, so no seams print)."""
    matrix = qr_matrix(text)
    n = len(matrix) + 2 * QUIET_ZONE
    side = min(rect.width(), rect.height())
    module = side / n
    p.save()
    p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
    p.setPen(Qt.PenStyle.NoPen)
    p.fillRect(QRectF(rect.x(), rect.y(), side, side), QColor("white"))
    p.setBrush(QColor("black"))
    for r, row in enumerate(matrix):
        c = 0
        while c < len(row):
            if not row[c]:
                c += 1
                continue
            start = c
            while c < len(row) and row[c]:
                c += 1
            p.drawRect(
                QRectF(
                    rect.x() + (QUIET_ZONE + start) * module,
                    rect.y() + (QUIET_ZONE + r) * module,
                    (c - start) * module,
                    module,
                )
            )
    p.restore()


def draw_label(p: QPainter, rect: QRectF, row: HandoverRow, home: str) -> None:
    """One cut-out label: dashed cut line, the QR code, node name, chip id, name."""
    p.save()
    pen = QPen(QColor("#999999"))
    pen.setWidthF(mm(0.2))
    pen.setStyle(Qt.PenStyle.DashLine)
    p.setPen(pen)
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawRect(rect)
    qr = mm(LABEL_QR_MM)
    draw_qr(p, QRectF(rect.center().x() - qr / 2, rect.y() + mm(2), qr, qr), row.qr_text)
    y = rect.y() + mm(2) + qr + mm(0.5)
    inner = rect.width() - mm(4)
    note = " · ".join(t for t in (row.name, row.location) if t) or home
    for text, f, colour in (
        (row.node_name, font(10, bold=True), "#000000"),
        (f"chip {row.chip_id or 'unknown'}", font(8.5, mono=True), "#000000"),
        *((line, font(7.5), "#444444") for line in _two_lines(p.device(), note, inner)),
    ):
        fm = QFontMetricsF(f, p.device())
        p.setFont(f)
        p.setPen(QColor(colour))
        shown = fm.elidedText(text, Qt.TextElideMode.ElideRight, inner)
        p.drawText(
            QRectF(rect.x() + mm(2), y, inner, fm.height()),
            int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop),
            shown,
        )
        y += fm.height()
    p.restore()


def _two_lines(device: QPaintDevice, text: str, width: float) -> list[str]:
    """`text` in at most two lines of `width` (word-wrapped; the rest elided)."""
    fm = QFontMetricsF(font(7.5), device)
    words, first = text.split(), ""
    while words and fm.horizontalAdvance((first + " " + words[0]).strip()) <= width:
        first = (first + " " + words.pop(0)).strip()
    if not first:  # one long word: broken by eliding
        return [text]
    return [first, " ".join(words)] if words else [first]


# -- the document ---------------------------------------------------------------------


def _title_block(
    device: QPaintDevice,
    p: QPainter | None,
    report: HandoverReport,
    x: float,
    y: float,
    width: float,
) -> float:
    """Draw the title block at y (measure only, with no painter); returns the y after it."""
    title = Line(f"Handover report: {report.home}", font(17, bold=True))
    h = _line_height(device, title, width)
    if p is not None:
        _draw_cell(p, [title], x, y, width)
    y += h + mm(2)
    facts = [
        ("Home", f"{report.home} (WiFi {report.home_wifi})"),
        ("Date", report.created.strftime("%Y-%m-%d %H:%M UTC")),
        ("Station", report.station or "this station"),
        ("Broker", report.broker),
        ("Devices", report.summary),
    ]
    key_w = mm(22)
    for key, value in facts:
        line = Line(value, font(9.5))
        h = _line_height(device, line, width - key_w)
        if p is not None:
            _draw_cell(p, [Line(key, font(9.5, bold=True))], x, y, key_w)
            _draw_cell(p, [line], x + key_w, y, width - key_w)
        y += h + mm(0.6)
    return y + mm(4)


def _header_lines() -> list[list[Line]]:
    return [[Line(title, font(8, bold=True))] for title, _ in COLUMNS]


def _header_height(device: QPaintDevice) -> float:
    return max(
        _cell_height(device, cell, mm(w) - 2 * mm(CELL_PAD_MM))
        for cell, (_, w) in zip(_header_lines(), COLUMNS, strict=True)
    ) + 2 * mm(CELL_PAD_MM)


def _table_header(p: QPainter, x: float, y: float) -> float:
    h = _header_height(p.device())
    p.fillRect(QRectF(x, y, mm(sum(w for _, w in COLUMNS)), h), QColor("#e8e8e8"))
    cx = x
    for cell, (_, w) in zip(_header_lines(), COLUMNS, strict=True):
        _draw_cell(p, cell, cx + mm(CELL_PAD_MM), y + mm(CELL_PAD_MM), mm(w) - 2 * mm(CELL_PAD_MM))
        cx += mm(w)
    return y + h


def _footer(p: QPainter, report: HandoverReport, page: int, pages: int) -> None:
    p.setFont(font(7.5))
    p.setPen(QColor("#555555"))
    y = mm(PAGE_H_MM - MARGIN_MM + 4)
    text_w = mm(PAGE_W_MM - 2 * MARGIN_MM)
    p.drawText(
        QRectF(mm(MARGIN_MM), y, text_w, mm(5)),
        FLAGS,
        f"{report.home}, handover report of {report.created:%Y-%m-%d}",
    )
    p.drawText(
        QRectF(mm(MARGIN_MM), y, text_w, mm(5)),
        int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop),
        f"page {page} of {pages}",
    )


def write_pdf(report: HandoverReport, path: str | Path) -> int:
    """Write the report as an A4 PDF; returns its number of pages."""
    ensure_app()
    path = Path(path)
    writer = QPdfWriter(str(path))
    writer.setResolution(DPI)
    writer.setPageLayout(
        QPageLayout(
            QPageSize(QPageSize.PageSizeId.A4),
            QPageLayout.Orientation.Portrait,
            QMarginsF(0, 0, 0, 0),
        )
    )
    writer.setTitle(f"Handover report: {report.home}")
    writer.setCreator("ESP32 provisioning station")
    painter = QPainter()
    if not painter.begin(writer):
        raise ReportError(f"cannot write {path}: the PDF file cannot be created there")
    try:
        return _paint(painter, writer, report)
    finally:
        painter.end()


def _paint(p: QPainter, writer: QPdfWriter, report: HandoverReport) -> int:
    x0 = mm(MARGIN_MM)
    top, bottom = mm(MARGIN_MM), mm(PAGE_H_MM - MARGIN_MM)
    widths = [mm(w) - 2 * mm(CELL_PAD_MM) for _, w in COLUMNS]
    table_w = mm(sum(w for _, w in COLUMNS))

    # Lay the table out first (row heights, page breaks), so each footer can say
    # "page n of N" and no row is ever cut between pages.
    rows = [(r, _cells(r, report.broker)) for r in report.rows]
    heights = [
        max(_cell_height(writer, cell, w) for cell, w in zip(cells, widths, strict=True))
        + 2 * mm(CELL_PAD_MM)
        for _, cells in rows
    ]
    header_h = _header_height(writer)
    title_h = _title_block(writer, None, report, x0, top, table_w) - top
    table_pages: list[list[int]] = [[]]
    y = top + title_h + header_h
    for i, h in enumerate(heights):
        if y + h > bottom and table_pages[-1]:
            table_pages.append([])
            y = top + header_h
        table_pages[-1].append(i)
        y += h
    per_label_page = LABEL_COLS * LABEL_ROWS
    label_pages = (len(rows) + per_label_page - 1) // per_label_page
    pages = len(table_pages) + label_pages

    page = 0
    for n, indices in enumerate(table_pages):
        if page:
            writer.newPage()
        page += 1
        y = _title_block(writer, p, report, x0, top, table_w) if n == 0 else top
        if not rows:
            p.setFont(font(10, italic=True))
            p.drawText(QRectF(x0, y, table_w, mm(10)), FLAGS, "No devices in this home.")
        else:
            y = _table_header(p, x0, y)
        for i in indices:
            row, cells = rows[i]
            if i % 2:
                p.fillRect(QRectF(x0, y, table_w, heights[i]), QColor("#f6f6f6"))
            cx = x0
            for (_, w_mm), cell, w in zip(COLUMNS, cells, widths, strict=True):
                _draw_cell(p, cell, cx + mm(CELL_PAD_MM), y + mm(CELL_PAD_MM), w)
                cx += mm(w_mm)
            y += heights[i]
            pen = QPen(QColor("#cccccc"))
            pen.setWidthF(mm(0.15))
            p.setPen(pen)
            p.drawLine(int(x0), int(y), int(x0 + table_w), int(y))
        _footer(p, report, page, pages)

    label_w, label_h = mm(LABEL_W_MM), mm(LABEL_H_MM)
    grid_x = (mm(PAGE_W_MM) - LABEL_COLS * label_w) / 2
    for start in range(0, len(rows), per_label_page):
        writer.newPage()
        page += 1
        p.setFont(font(11, bold=True))
        p.setPen(QColor("black"))
        p.drawText(
            QRectF(x0, top - mm(8), table_w, mm(7)),
            FLAGS,
            f"QR labels: {report.home} (cut along the dashed lines)",
        )
        for k, (row, _) in enumerate(rows[start : start + per_label_page]):
            col, line = k % LABEL_COLS, k // LABEL_COLS
            rect = QRectF(grid_x + col * label_w, top + line * label_h, label_w, label_h)
            draw_label(p, rect, row, report.home)
        _footer(p, report, page, pages)
    return pages


def export_handover(
    registry: Registry,
    home: Home | int | str,
    *,
    csv_path: str | Path | None = None,
    pdf_path: str | Path | None = None,
    station_broker: str | None = None,
) -> HandoverReport:
    """The one call for the GUI's File → Export handover report: gather `home`'s report
    (a Home, id or name) and write the CSV and/or the PDF."""
    report = gather(registry, home, station_broker=station_broker)
    if csv_path is not None:
        write_csv(report, csv_path)
    if pdf_path is not None:
        write_pdf(report, pdf_path)
    return report


__all__ = ["draw_label", "draw_qr", "ensure_app", "export_handover", "write_pdf"]

"""A small two-series time chart (temperature left axis, humidity right axis).

Hand-drawn with QPainter rather than QtCharts: QtCharts is in PySide6-Addons, about
150 MB more to install on every installer's laptop, for one line chart of two series
whose whole needs (two axes, a time axis, a hover-free repaint) fit in this file.
PySide6-Essentials (QtCore/QtGui/QtWidgets) stays sufficient for the whole station.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

TEMP_COLOUR = QColor("#d84315")
HUM_COLOUR = QColor("#1565c0")
# Points kept per series: a day at one reading per 10 s is 8640; the widget is a few
# hundred pixels wide, so more points than this only cost paint time.
MAX_POINTS = 2000


Point = tuple[float, float | None, float | None]  # (epoch s, temperature, humidity)


def downsample(points: list[Point], limit: int = MAX_POINTS) -> list[Point]:
    """Every n-th point so at most `limit` remain (keeping the last, the newest)."""
    if len(points) <= limit:
        return list(points)
    step = math.ceil(len(points) / limit)
    out = points[::step]
    if out[-1] is not points[-1]:
        out.append(points[-1])
    return out


def _nice_range(lo: float, hi: float) -> tuple[float, float]:
    if hi - lo < 1.0:
        mid = (hi + lo) / 2
        lo, hi = mid - 0.5, mid + 0.5
    pad = (hi - lo) * 0.1
    return math.floor(lo - pad), math.ceil(hi + pad)


class HistoryChart(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._points: list[Point] = []
        self._message = "No readings yet"
        self.setMinimumHeight(160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(420, 220)

    # -- data --------------------------------------------------------------------------

    def set_points(self, points: list[Point], message: str = "No readings yet") -> None:
        self._points = downsample(sorted(points, key=lambda p: p[0]))
        self._message = message
        self.update()

    def add_point(self, ts: dt.datetime, temperature: float | None, humidity: float | None):
        """A live reading (naive UTC) appended without going back to the database."""
        t = ts.replace(tzinfo=dt.UTC).timestamp()
        if self._points and t < self._points[-1][0]:
            bisect.insort(self._points, (t, temperature, humidity), key=lambda p: p[0])
        else:
            self._points.append((t, temperature, humidity))
        if len(self._points) > MAX_POINTS * 2:
            self._points = downsample(self._points)
        self.update()

    def points(self) -> list[Point]:
        return list(self._points)

    def clear(self, message: str = "") -> None:
        self.set_points([], message)

    # -- painting ----------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        p.fillRect(self.rect(), pal.base())
        fm = QFontMetrics(self.font())
        text_pen = QPen(pal.text().color())
        temps = [t for _, t, _ in self._points if t is not None]
        hums = [h for _, _, h in self._points if h is not None]
        if not temps and not hums:
            p.setPen(text_pen)
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._message)
            p.end()
            return
        left = fm.horizontalAdvance("-00.0 °C") + 8
        right = fm.horizontalAdvance("100.0 %") + 8
        top, bottom = fm.height() + 6, fm.height() + 8
        plot = QRectF(left, top, self.width() - left - right, self.height() - top - bottom)
        if plot.width() < 20 or plot.height() < 20:
            p.end()
            return
        t0, t1 = self._points[0][0], self._points[-1][0]
        if t1 - t0 < 60:
            t0 = t1 - 60
        tlo, thi = _nice_range(min(temps), max(temps)) if temps else (0.0, 1.0)
        hlo, hhi = _nice_range(min(hums), max(hums)) if hums else (0.0, 100.0)

        def x_of(t: float) -> float:
            return plot.left() + (t - t0) / (t1 - t0) * plot.width()

        # Grid and axis labels: 4 horizontal divisions, labels for both series.
        grid = QPen(pal.mid().color())
        grid.setStyle(Qt.PenStyle.DotLine)
        for k in range(5):
            y = plot.bottom() - k / 4 * plot.height()
            p.setPen(grid)
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            if temps:
                p.setPen(TEMP_COLOUR)
                value = tlo + k / 4 * (thi - tlo)
                # A narrow range needs a decimal, or the axis repeats its labels.
                label = f"{value:.1f} °C" if thi - tlo < 8 else f"{value:.0f} °C"
                p.drawText(
                    QRectF(0, y - fm.height() / 2, left - 4, fm.height()),
                    Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                    label,
                )
            if hums:
                p.setPen(HUM_COLOUR)
                value = hlo + k / 4 * (hhi - hlo)
                label = f"{value:.1f} %" if hhi - hlo < 8 else f"{value:.0f} %"
                p.drawText(
                    QRectF(plot.right() + 4, y - fm.height() / 2, right - 4, fm.height()),
                    Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                    label,
                )
        p.setPen(text_pen)
        for t, align in ((t0, Qt.AlignmentFlag.AlignLeft), (t1, Qt.AlignmentFlag.AlignRight)):
            label = dt.datetime.fromtimestamp(t).strftime(
                "%H:%M" if t1 - t0 < 86400 else "%d %b %H:%M"
            )
            p.drawText(
                QRectF(plot.left(), plot.bottom() + 2, plot.width(), fm.height() + 4),
                align | Qt.AlignmentFlag.AlignTop,
                label,
            )
        # Legend.
        p.setPen(TEMP_COLOUR)
        p.drawText(
            QRectF(plot.left(), 0, plot.width(), top), Qt.AlignmentFlag.AlignLeft, "Temperature"
        )
        p.setPen(HUM_COLOUR)
        p.drawText(
            QRectF(plot.left(), 0, plot.width(), top), Qt.AlignmentFlag.AlignRight, "Humidity"
        )

        for idx, colour, lo, hi in ((1, TEMP_COLOUR, tlo, thi), (2, HUM_COLOUR, hlo, hhi)):
            path = QPainterPath()
            pen_down = False
            for pt in self._points:
                v = pt[idx]
                if v is None:  # a failed sensor read breaks the line
                    pen_down = False
                    continue
                q = QPointF(x_of(pt[0]), plot.bottom() - (v - lo) / (hi - lo) * plot.height())
                if pen_down:
                    path.lineTo(q)
                else:
                    path.moveTo(q)
                    pen_down = True
            pen = QPen(colour)
            pen.setWidthF(1.6)
            p.setPen(pen)
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawPath(path)
        p.end()

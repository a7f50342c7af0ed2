"""A one-page report of one result, as PDF or PNG: the image, its heatmap, the verdict and the disclaimer."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from qtpy.QtCore import QMarginsF, QRectF, QSizeF, Qt
from qtpy.QtGui import (
    QColor,
    QFont,
    QImage,
    QLinearGradient,
    QPageLayout,
    QPageSize,
    QPaintDevice,
    QPainter,
    QPdfWriter,
    QPixmap,
)

from skinscan import DISCLAIMER, __version__
from skinscan.core.errors import SkinscanError
from skinscan.core.heatmap import HEATMAP_LEGEND, RAMP_HEX
from skinscan.gui.qt_result import BAR_COLOURS, NEUTRAL, paint_probability_bar, text_colour_on
from skinscan.gui.state import HistoryItem, percent

DPI = 150
PAGE_PX = (1240, 1754)  # A4 at 150 dpi: PDF and PNG share one layout in device pixels
MARGIN = 90
REPORT_SUFFIXES = (".pdf", ".png")


def write_report(item: HistoryItem, path: str | os.PathLike[str]) -> Path:
    """Write `item`'s report to `path`: PDF for .pdf, PNG for .png (no suffix: PDF is added).

    Raises:
        SkinscanError: the item has no result yet, or the file cannot be written.
    """
    if item.result is None:
        raise SkinscanError("this image has no result to report" + (f": {item.error}" if item.error else " yet"))
    target = Path(path)
    if target.suffix.lower() not in REPORT_SUFFIXES:
        target = target.with_name(target.name + ".pdf")
    if target.suffix.lower() == ".pdf":
        writer = QPdfWriter(str(target))
        writer.setResolution(DPI)
        writer.setPageLayout(
            QPageLayout(QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Portrait, QMarginsF(0, 0, 0, 0))
        )
        writer.setTitle(f"skinscan report: {item.name}")
        writer.setCreator(f"skinscan {__version__}")
        painter = QPainter()
        if not painter.begin(writer):
            raise SkinscanError(f"cannot write {target}")
        paint_report(painter, writer, item)
        painter.end()
        if not target.is_file():
            raise SkinscanError(f"cannot write {target}")
        return target
    image = QImage(PAGE_PX[0], PAGE_PX[1], QImage.Format.Format_RGB32)
    image.setDotsPerMeterX(round(DPI / 0.0254))
    image.setDotsPerMeterY(round(DPI / 0.0254))
    image.fill(QColor("white"))
    painter = QPainter(image)
    paint_report(painter, image, item)
    painter.end()
    if not image.save(str(target), "PNG"):
        raise SkinscanError(f"cannot write {target}")
    return target


def _font(px: int, *, bold: bool = False, italic: bool = False) -> QFont:
    font = QFont()
    font.setPixelSize(px)
    font.setBold(bold)
    font.setItalic(italic)
    return font


def _text(painter: QPainter, rect: QRectF, text: str, font: QFont, colour: str = "#1f2328") -> float:
    """Draw wrapped text at the top of `rect`; returns the height used."""
    painter.setFont(font)
    painter.setPen(QColor(colour))
    flags = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap)
    used = painter.boundingRect(rect, flags, text)
    painter.drawText(rect, flags, text)
    return used.height()


def _legend(painter: QPainter, box: QRectF, legend: str) -> float:
    """The heatmap's colour scale with its two ends named, and the legend's sentence; returns the height used."""
    gradient = QLinearGradient(box.left(), 0, box.right(), 0)
    for i, colour in enumerate(RAMP_HEX):
        gradient.setColorAt(i / (len(RAMP_HEX) - 1), QColor(colour))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(gradient)
    painter.drawRoundedRect(QRectF(box.left(), box.top(), box.width(), 16), 8, 8)
    ends = QRectF(box.left(), box.top() + 20, box.width(), 30)
    painter.setFont(_font(18))
    painter.setPen(QColor("#5c6370"))
    painter.drawText(ends, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop), "threshold")
    painter.drawText(ends, int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop), "highest severity")
    text = QRectF(box.left(), box.top() + 50, box.width(), box.height() - 50)
    return 50 + _text(painter, text, legend, _font(20), "#3b4048")


def _picture(painter: QPainter, box: QRectF, data: bytes | None, caption: str) -> None:
    pixmap = QPixmap()
    if not data or not pixmap.loadFromData(data):
        return
    area = QRectF(box.left(), box.top(), box.width(), box.height() - 40)
    size = QSizeF(pixmap.size()).scaled(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
    target = QRectF(area.left() + (area.width() - size.width()) / 2, area.top(), size.width(), size.height())
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    painter.drawPixmap(target, pixmap, QRectF(pixmap.rect()))
    _text(painter, QRectF(target.left(), target.bottom() + 8, box.width(), 36), caption, _font(20), "#5c6370")


def paint_report(painter: QPainter, device: QPaintDevice, item: HistoryItem) -> None:
    """The report's page on any paint device of PAGE_PX size at DPI (a PDF page or an image)."""
    result = item.result
    assert result is not None  # write_report refuses items without one
    width = device.width()
    content = width - 2 * MARGIN
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
    y = float(MARGIN)
    y += _text(painter, QRectF(MARGIN, y, content, 60), "skinscan screening report", _font(44, bold=True))
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    details = f"{item.source}\n{stamp} · model {item.model or 'unknown'} · skinscan {__version__}"
    y += 10 + _text(painter, QRectF(MARGIN, y + 10, content, 80), details, _font(20), "#5c6370")
    y += 30
    # the image and its heatmap side by side
    half = (content - 40) / 2
    picture_height = 520.0
    _picture(painter, QRectF(MARGIN, y, half, picture_height), item.preview, "Image")
    _picture(painter, QRectF(MARGIN + half + 40, y, half, picture_height), result.overlay_png, "Heatmap")
    y += picture_height + 10
    if result.overlay_png:
        y += _legend(painter, QRectF(MARGIN, y, content, 150), result.heatmap_legend or HEATMAP_LEGEND)
    y += 20
    if result.ok:
        colour = result.colour or NEUTRAL
        y += _text(painter, QRectF(MARGIN, y, content, 70), result.display_label, _font(52, bold=True), colour) + 6
        line = f"Probability of malignancy {percent(result.probability)} (threshold {percent(result.threshold)})"
        y += _text(painter, QRectF(MARGIN, y, content, 40), line, _font(24)) + 12
        light = BAR_COLOURS["light"]
        paint_probability_bar(
            painter, QRectF(MARGIN, y, content, 90), result.probability or 0.0, result.threshold, colour,
            track=light["track"], mark=light["mark"], text=light["text"], font_px=20,
        )  # fmt: skip
        y += 110
        chip = f"Severity {result.severity}/6 · {result.severity_name}"
        painter.setFont(_font(26, bold=True))
        chip_rect = QRectF(MARGIN, y, painter.fontMetrics().horizontalAdvance(chip) + 40, 50)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(colour))
        painter.drawRoundedRect(chip_rect, 12, 12)
        painter.setPen(QColor(text_colour_on(colour)))
        painter.drawText(chip_rect, int(Qt.AlignmentFlag.AlignCenter), chip)
        y += 50 + 24
        y += _text(painter, QRectF(MARGIN, y, content, 120), result.description or "", _font(24)) + 14
        advice = f"Recommendation: {result.recommendation}" if result.recommendation else ""
        y += _text(painter, QRectF(MARGIN, y, content, 120), advice, _font(24, bold=True))
    else:
        headline = result.display_label or "Cannot judge this photo"
        y += _text(painter, QRectF(MARGIN, y, content, 70), headline, _font(48, bold=True), "#b26a00")
        y += 10 + _text(painter, QRectF(MARGIN, y + 10, content, 200), result.reason or "", _font(24))
    # the disclaimer in a box at the foot of the page
    font = _font(22, italic=True)
    painter.setFont(font)
    flags = int(Qt.AlignmentFlag.AlignLeft | Qt.TextFlag.TextWordWrap)
    height = painter.boundingRect(QRectF(0, 0, content - 48, 400), flags, DISCLAIMER).height() + 44
    box = QRectF(MARGIN, device.height() - MARGIN - height, content, height)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor("#f3f4f6"))
    painter.drawRoundedRect(box, 14, 14)
    _text(painter, box.adjusted(24, 22, -24, -22), DISCLAIMER, font, "#3d434d")

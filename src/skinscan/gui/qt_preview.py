"""The image preview: the current image scaled to the space it has, or its heatmap overlay when that is on."""

from __future__ import annotations

from qtpy.QtCore import QRectF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPaintEvent, QPen, QPixmap
from qtpy.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from skinscan.core.heatmap import HEATMAP_LEGEND, RAMP_HEX
from skinscan.gui.state import AppState, Event

RAMP_STYLE = "border-radius: 4px; background: qlineargradient(x1:0, y1:0, x2:1, y2:0, {});".format(
    ", ".join(f"stop:{i / (len(RAMP_HEX) - 1):g} {colour}" for i, colour in enumerate(RAMP_HEX))
)

PLACEHOLDER = "Drop images or a folder here\nor press Ctrl+O to select an image"


class ImageView(QWidget):
    """Paints one picture as large as fits, aspect kept, centred; a dashed drop target while it has none."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("imageView")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(240, 200)
        self.pixmap: QPixmap | None = None
        self.placeholder = PLACEHOLDER
        self._scaled: QPixmap | None = None

    def set_image(self, data: bytes | None, placeholder: str = PLACEHOLDER) -> None:
        self.placeholder = placeholder
        self.pixmap = None
        if data:
            pixmap = QPixmap()
            if pixmap.loadFromData(data):
                self.pixmap = pixmap
        self._scaled = None
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(520, 440)

    def shown_size(self) -> QSize:
        """The size the picture is drawn at now (empty without one)."""
        if self.pixmap is None:
            return QSize()
        return self.pixmap.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)

    def paintEvent(self, event: QPaintEvent | None) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        colour = self.palette().windowText().color()
        if self.pixmap is None:
            pen = QPen(QColor(colour.red(), colour.green(), colour.blue(), 90), 2, Qt.PenStyle.DashLine)
            painter.setPen(pen)
            painter.drawRoundedRect(QRectF(self.rect()).adjusted(12, 12, -12, -12), 14, 14)
            painter.setPen(QColor(colour.red(), colour.green(), colour.blue(), 160))
            painter.drawText(self.rect(), int(Qt.AlignmentFlag.AlignCenter), self.placeholder)
            return
        target = self.shown_size()
        if self._scaled is None or self._scaled.size() != target:
            # scaled once per size, not per paint: smooth scaling of a large image is not free
            self._scaled = self.pixmap.scaled(
                target, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
        x = (self.width() - self._scaled.width()) // 2
        y = (self.height() - self._scaled.height()) // 2
        painter.drawPixmap(x, y, self._scaled)


class PreviewPanel(QWidget):
    """The current image, or its heatmap overlay while `state.show_heatmap` is on, with a caption."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("previewPanel")
        self.state = state
        self.view = ImageView(self)
        self.caption = QLabel(self)
        self.caption.setObjectName("caption")
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption.setWordWrap(True)
        # the heatmap's colour scale, yellow at the threshold to red at the highest severity, while it is shown
        self.ramp = QLabel(self)
        self.ramp.setObjectName("heatmapRamp")
        self.ramp.setFixedHeight(10)
        self.ramp.setStyleSheet(RAMP_STYLE)
        self.ramp.setToolTip("left: the model's threshold; right: the highest severity")
        self.ramp.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.ramp)
        layout.addWidget(self.caption)
        self.showing_heatmap = False
        for event in (Event.CURRENT, Event.DISPLAY):
            state.subscribe(event, self.refresh)
        self.refresh()

    def refresh(self) -> None:
        item = self.state.current
        self.showing_heatmap = False
        self.ramp.setVisible(False)
        if item is None:
            self.view.set_image(None)
            self.caption.setText("")
            return
        overlay = item.result.overlay_png if item.result else None
        if self.state.show_heatmap and overlay:
            self.showing_heatmap = True
            self.view.set_image(overlay)
            legend = item.result.heatmap_legend if item.result and item.result.heatmap_legend else HEATMAP_LEGEND
            self.ramp.setVisible(True)
            self.caption.setText(f"{item.name}\n{legend}")
            return
        pending = "Analysing…" if item.pending else "No preview: the file could not be read as an image"
        self.view.set_image(item.preview, placeholder=pending)
        note = ""
        if self.state.show_heatmap and item.result is not None:
            note = " — no heatmap: the image was not judged" if not item.result.ok else " — no heatmap"
        self.caption.setText(item.name + note)

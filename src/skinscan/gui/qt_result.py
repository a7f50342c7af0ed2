"""The result panel: label, probability bar with the threshold marked, severity in its colour, description,
recommendation and the disclaimer; or why an image was refused, or what went wrong."""

from __future__ import annotations

from qtpy.QtCore import QRectF, QSize, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPaintEvent, QPen
from qtpy.QtWidgets import QFrame, QLabel, QSizePolicy, QVBoxLayout, QWidget

from skinscan import DISCLAIMER
from skinscan.gui.state import AppState, Event, HistoryItem, percent

# the bar's own colours per theme (painted, so the stylesheet cannot reach them)
BAR_COLOURS = {
    "dark": {"track": "#343844", "mark": "#f5f5f5", "text": "#c9ccd4"},
    "light": {"track": "#e3e6ec", "mark": "#1f2328", "text": "#4a505c"},
}
NEUTRAL = "#5b8def"


def paint_probability_bar(
    painter: QPainter, rect: QRectF, probability: float, threshold: float, colour: str, *,
    track: str, mark: str, text: str, font_px: int,
) -> None:  # fmt: skip
    """A rounded bar filled to `probability`, with a tick and "threshold" caption at `threshold`.

    The top two thirds of `rect` hold the bar; the bottom third the caption.
    """
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    bar = QRectF(rect.left(), rect.top() + rect.height() * 0.1, rect.width(), rect.height() * 0.5)
    radius = bar.height() / 2
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(track))
    painter.drawRoundedRect(bar, radius, radius)
    filled = QRectF(
        bar.left(), bar.top(), max(bar.height(), bar.width() * min(max(probability, 0.0), 1.0)), bar.height()
    )
    painter.setBrush(QColor(colour))
    painter.drawRoundedRect(filled, radius, radius)
    x = bar.left() + bar.width() * min(max(threshold, 0.0), 1.0)
    painter.setPen(QPen(QColor(mark), max(2.0, bar.height() / 6)))
    painter.drawLine(int(x), int(rect.top()), int(x), int(bar.bottom() + bar.height() * 0.2))
    font = QFont(painter.font())
    font.setPixelSize(font_px)
    painter.setFont(font)
    painter.setPen(QColor(text))
    label = f"threshold {percent(threshold)}"
    width = painter.fontMetrics().horizontalAdvance(label) + 2
    # keep the caption inside the bar's width when the threshold sits near an end
    left = min(max(x - width / 2, rect.left()), rect.right() - width)
    top = bar.bottom() + bar.height() * 0.2
    caption = QRectF(left, top, width, rect.bottom() - top)
    painter.drawText(caption, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop), label)
    painter.restore()


class ProbabilityBar(QWidget):
    """The probability of malignancy as a bar, the operating threshold marked on it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("probabilityBar")
        self.probability: float | None = None
        self.threshold = 0.5
        self.colour = NEUTRAL
        self.theme = "dark"
        self.setMinimumHeight(44)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_values(self, probability: float | None, threshold: float, colour: str | None) -> None:
        self.probability, self.threshold, self.colour = probability, threshold, colour or NEUTRAL
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(260, 44)

    def paintEvent(self, event: QPaintEvent | None) -> None:
        if self.probability is None:
            return
        colours = BAR_COLOURS.get(self.theme, BAR_COLOURS["dark"])
        painter = QPainter(self)
        paint_probability_bar(
            painter, QRectF(self.rect()).adjusted(1, 0, -1, 0), self.probability, self.threshold, self.colour,
            track=colours["track"], mark=colours["mark"], text=colours["text"], font_px=11,
        )  # fmt: skip
        painter.end()


def text_colour_on(background: str) -> str:
    """Black or white, whichever reads better on `background` (the severity colours run from green to yellow to red)."""
    colour = QColor(background)
    luminance = 0.299 * colour.red() + 0.587 * colour.green() + 0.114 * colour.blue()
    return "#1a1a1a" if luminance > 150 else "#ffffff"


def repolish(widget: QWidget) -> None:
    """Re-apply the stylesheet after a dynamic property it selects on has changed."""
    style = widget.style()
    if style is not None:
        style.unpolish(widget)
        style.polish(widget)


def _label(name: str, parent: QWidget, *, wrap: bool = True) -> QLabel:
    label = QLabel(parent)
    label.setObjectName(name)
    label.setWordWrap(wrap)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class ResultPanel(QFrame):
    """Shows the current item's result; re-reads the state on CURRENT and THEME."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("resultPanel")
        self.state = state
        self.title = _label("resultTitle", self)
        self.label = _label("verdict", self)
        self.probability_text = _label("probabilityText", self)
        self.bar = ProbabilityBar(self)
        self.severity = _label("severityChip", self, wrap=False)
        self.description = _label("description", self)
        self.recommendation = _label("recommendation", self)
        self.diagnoses = _label("diagnoses", self)
        self.message = _label("message", self)
        self.disclaimer = _label("disclaimer", self)
        self.disclaimer.setText(DISCLAIMER)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 16)
        layout.setSpacing(10)
        for widget in (
            self.title,
            self.label,
            self.probability_text,
            self.bar,
            self.severity,
            self.description,
            self.recommendation,
            self.diagnoses,
            self.message,
        ):
            layout.addWidget(widget)
        layout.addStretch(1)
        layout.addWidget(self.disclaimer)
        self.setMinimumWidth(300)
        state.subscribe(Event.CURRENT, self.refresh)
        state.subscribe(Event.THEME, self.refresh)
        self.refresh()

    def _show_verdict(self, shown: bool) -> None:
        for widget in (
            self.label,
            self.probability_text,
            self.bar,
            self.severity,
            self.description,
            self.recommendation,
            self.diagnoses,
        ):
            widget.setVisible(shown)

    def _show_message(self, kind: str, text: str) -> None:
        self._show_verdict(False)
        self.message.setText(text)
        self.message.setProperty("kind", kind)  # the stylesheet colours info, warning and error messages
        repolish(self.message)
        self.message.setVisible(True)

    def refresh(self) -> None:
        self.bar.theme = self.state.theme
        item = self.state.current
        if item is None:
            self.title.setText("Result")
            self._show_message(
                "info",
                "No image yet. Drop images or a folder onto the window, paste an image "
                "(Ctrl+V) or choose one with Select Image (Ctrl+O).",
            )
            return
        self.title.setText(item.name)
        self.show_item(item)

    def show_item(self, item: HistoryItem) -> None:
        if item.error is not None:
            self._show_message("error", f"Could not analyse this image.\n\n{item.error}")
            return
        if item.result is None:
            self._show_message("info", "Analysing…")
            return
        result = item.result
        if not result.ok:
            self._show_message("warning", f"{result.display_label or 'Cannot judge this photo'}.\n\n{result.reason}")
            return
        self.message.setVisible(False)
        self._show_verdict(True)
        colour = result.colour or NEUTRAL
        self.label.setText(result.display_label)
        self.label.setStyleSheet(f"color: {colour};")
        side = "at or above" if (result.probability or 0) >= result.threshold else "below"
        where = f"{side} the threshold of {percent(result.threshold)}"
        self.probability_text.setText(f"Probability of malignancy: {percent(result.probability)} ({where})")
        self.probability_text.setToolTip(f"The model calls an image malignant from {percent(result.threshold)} up")
        self.bar.set_values(result.probability, result.threshold, colour)
        self.severity.setText(f"  Severity {result.severity}/6 · {result.severity_name}  ")
        self.severity.setStyleSheet(f"background-color: {colour}; color: {text_colour_on(colour)};")
        self.description.setText(result.description or "")
        self.recommendation.setText(f"Recommendation: {result.recommendation}" if result.recommendation else "")
        self.diagnoses.setText(result.diagnosis_line)
        self.diagnoses.setVisible(bool(result.diagnosis_line))

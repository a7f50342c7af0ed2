"""The site profile in use, in the status bar: its name, date, images, and the sensitivity and specificity to
expect (the local engine's profile, or the one the connected server applies)."""

from __future__ import annotations

from qtpy.QtWidgets import QLabel, QWidget

from skinscan.gui.qt_result import repolish
from skinscan.gui.state import AppState, Event


class SiteLabel(QLabel):
    """Shows `state.site_text`; styled by whether a profile is active (the `active` property)."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("siteLabel")
        self.state = state
        state.subscribe(Event.SITE, self.refresh)
        self.refresh()

    def refresh(self) -> None:
        text = self.state.site_text
        self.setText(text)
        site = self.state.site_info or {}
        where = site.get("name") and f"{text}\n(threshold {site.get('threshold')}, {site.get('active')} calibration)"
        self.setToolTip(where or text)
        self.setProperty("active", "true" if self.state.site_info else "false")
        repolish(self)

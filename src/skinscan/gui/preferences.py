"""The settings remembered between runs (theme, heatmap, last folder, local or remote mode) in QSettings."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QSettings

from skinscan.gui.state import THEMES, AppState, Event


def _get(settings: QSettings, key: str, default: Any, kind: type) -> Any:
    value = settings.value(key, default)
    if value is None:
        return default
    try:
        # INI files give strings back; "false" must not read as True
        return value.lower() in ("true", "1") if kind is bool and isinstance(value, str) else kind(value)
    except (TypeError, ValueError):
        return default


def read_preferences(settings: QSettings) -> dict[str, Any]:
    """AppState keyword arguments from the stored settings, falling back to the defaults for bad values."""
    mode = _get(settings, "mode", "local", str)
    theme = _get(settings, "theme", THEMES[0], str)
    return {
        "mode": mode if mode in ("local", "remote") else "local",
        "host": _get(settings, "host", "127.0.0.1", str) or "127.0.0.1",
        "port": _get(settings, "port", 9889, int),
        "theme": theme if theme in THEMES else THEMES[0],
        "show_heatmap": _get(settings, "show_heatmap", False, bool),
        "last_folder": _get(settings, "last_folder", "", str),
    }


def preferences_of(state: AppState) -> dict[str, Any]:
    return {
        "mode": state.mode, "host": state.host, "port": state.port, "theme": state.theme,
        "show_heatmap": state.show_heatmap, "last_folder": state.last_folder,
    }  # fmt: skip


def write_preferences(state: AppState, settings: QSettings) -> None:
    for key, value in preferences_of(state).items():
        settings.setValue(key, value)
    settings.sync()


def remember_preferences(state: AppState, settings: QSettings) -> None:
    """Write the settings whenever the state changes one of them (not on every result)."""
    written = preferences_of(state)

    def save() -> None:
        nonlocal written
        if preferences_of(state) != written:
            write_preferences(state, settings)
            written = preferences_of(state)

    for event in (Event.CONNECTION, Event.THEME, Event.DISPLAY, Event.HISTORY):
        state.subscribe(event, save)

"""Whether a newer model than this computer's is on offer, without Qt: which sources to ask (the connected server,
the configured updates source) and the question itself, run off the UI thread by workers.UpdateCheck."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from skinscan.core.errors import SkinscanError
from skinscan.gui.state import AppState, UpdateNotice
from skinscan.runtime.updates import newer_offer

UPDATE_TIMEOUT_S = 4.0  # an update check waits no longer for a source; it never holds anything up anyway


def update_sources(state: AppState) -> list[tuple[str, str | None]]:
    """(source, API key) pairs to ask: the connected server, then the configured updates source. The API key goes
    only to the server it was typed in for (or to the updates source when that is the same server)."""
    key = state.api_key or None
    sources: list[tuple[str, str | None]] = []
    if state.mode == "remote":
        sources.append((state.server_url, key))
    if state.updates and not (sources and state.updates.rstrip("/") == state.server_url):
        sources.append((state.updates, key if _same_server(state.updates, state.host, state.port) else None))
    return sources


def find_update(
    current: Callable[[], str], sources: Sequence[tuple[str, str | None]], *, timeout_s: float = UPDATE_TIMEOUT_S
) -> UpdateNotice | None:
    """A notice of the newest model above `current()` that any source offers, or None: also when the version in use
    cannot be read or no source answers (an update check never fails aloud)."""
    if not sources:
        return None
    try:
        version = current()
    except (SkinscanError, OSError, ValueError):
        return None
    offer = newer_offer(version, sources, timeout_s=timeout_s)
    if offer is None:
        return None
    key = dict(sources).get(offer.source)
    return UpdateNotice(offer.id, offer.version, version, offer.source, needs_key=key is not None)


def _same_server(source: str, host: str, port: int) -> bool:
    parts = urlsplit(source)
    try:
        return parts.scheme in ("http", "https") and parts.hostname == host and parts.port == port
    except ValueError:  # a port that is not a number
        return False

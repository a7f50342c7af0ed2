"""The HTTP protocol `skinscan serve` runs: uvicorn's h11 protocol, hardened for clients that are slow, many or
ambiguous.

uvicorn alone closes a connection only once it has answered a request on it and the client then says nothing for
5 s: a client that connects and sends nothing, or half a request, is kept for ever, and enough of them use up the
process's file descriptors (accept() then fails, and asyncio logs a traceback per waiting connection, thousands a
second). So, per connection:

- the request's headers must arrive within `header_timeout_s` of the connection opening or of its previous
  response; the body may pause no longer than `body_timeout_s`; the whole request must arrive within
  `read_timeout_s`. A request cut short gets a 408 and the connection is closed; one that never began is closed.
- at most `max_connections` per process (fewer where the file-descriptor limit asks for it): a new connection
  over the cap closes the connection that has been idle (no request in progress) longest, and if none is idle,
  gets a 503 and is closed.
- a request with both Content-Length and Transfer-Encoding gets a 400 and the connection is closed (RFC 9112
  §6.1): a proxy in front that reads the other length would otherwise let a second, smuggled request through.

The hooks are uvicorn's h11 protocol's own methods (`data_received`, `on_response_complete`, ...), so this builds on
h11_impl, not on httptools.
"""

from __future__ import annotations

import asyncio
import json
import socket
from functools import partial
from http import HTTPStatus
from typing import Any

import h11
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from skinscan.api.connections import ConnectionLimits, RateLimitedWarning, connection_cap, fd_limit
from skinscan.api.errors import error_body
from skinscan.api.middleware import SECURITY_HEADERS

_SECURITY_HEADERS = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]

# Process-wide, like the log they protect: under attack each would otherwise be logged per connection.
_evicting = RateLimitedWarning("connection cap reached: closing the longest-idle connection for each new one")
_refusing = RateLimitedWarning("connection cap reached with every connection busy: new connections get a 503")
_timing_out = RateLimitedWarning("clients too slow to send their requests: answered 408 and closed")


def protocol_factory(limits: ConnectionLimits) -> Any:
    """What uvicorn's `http` option takes to run `SkinscanProtocol` under these limits (picklable, for workers)."""
    return partial(SkinscanProtocol, limits=limits)


class _StrictConnection(h11.Connection):
    """h11's server side, refusing a request with both Content-Length and Transfer-Encoding, and keeping the reason
    it refused the last malformed request (uvicorn answers every one with the same text)."""

    refusal: str | None = None

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refusal = str(exc) or None
            raise
        if isinstance(event, h11.Request):
            names = {name for name, _ in event.headers}
            if b"content-length" in names and b"transfer-encoding" in names:
                self.refusal = "a request must not have both Content-Length and Transfer-Encoding"
                raise h11.RemoteProtocolError(self.refusal, 400)
        return event


class SkinscanProtocol(H11Protocol):
    """uvicorn's h11 protocol with TCP_NODELAY, read timeouts, a connection cap and strict framing (see above)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        limits: ConnectionLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits if limits is not None else ConnectionLimits()
        size = config.h11_max_incomplete_event_size
        self.conn = _StrictConnection(h11.SERVER, DEFAULT_MAX_INCOMPLETE_EVENT_SIZE if size is None else size)
        self._ready_at = 0.0  # when the connection became ready for its next request: opened, or last response ended
        self._last_read = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    # --- uvicorn's hooks ---------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # asyncio sets TCP_NODELAY only on connections accepted from a listener created with proto IPPROTO_TCP. With
        # --workers N uvicorn binds the listener itself with proto 0 (Kludex/uvicorn#3149), so Nagle's algorithm
        # stays on: the response body, written after its headers, waits for the client's delayed ACK of them,
        # 40 ms or more on Linux for every request on a kept-alive connection.
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        self._ready_at = self._last_read = self.loop.time()
        if not self._make_room():
            _refusing()
            self.app = _at_capacity  # answered when its request arrives, so that the client reads the 503
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._last_read = self.loop.time()
        state, cycle = self.conn.their_state, self.cycle
        super().data_received(data)
        if state is not h11.IDLE and (self.conn.their_state is h11.IDLE or self.cycle is not cycle):
            self._ready_at = self._last_read  # a body that ended after its response: the next request's turn
        self._arm()

    def on_response_complete(self) -> None:
        now, cycle = self.loop.time(), self.cycle
        super().on_response_complete()  # which may start on a pipelined request at once
        if self.conn.their_state is h11.IDLE or self.cycle is not cycle:
            self._ready_at = now
        self._arm()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's own says "Invalid HTTP request received." in plain text; the API answers in JSON, with the reason
        assert isinstance(self.conn, _StrictConnection)
        body = _json_error(400, f"malformed HTTP request: {self.conn.refusal or msg}")
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close"), *_SECURITY_HEADERS]  # fmt: skip
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                      h11.EndOfMessage()):  # fmt: skip
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()

    # --- the connection cap ------------------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """No request in progress: waiting for one, or for the rest of its headers."""
        return self.conn.their_state is h11.IDLE and not self.transport.is_closing()

    def _make_room(self) -> bool:
        """Whether this new connection may stay: under the cap, or the longest-idle other connection was closed."""
        cap = connection_cap(self.limits.max_connections, fd_limit(), self.config.backlog)
        if len(self.connections) <= cap:
            return True
        # only at the cap: a pass over every connection, to leave out those already closing and find the oldest
        others = [c for c in self.connections if c is not self and not c.transport.is_closing()]
        if len(others) < cap:
            return True
        idle = [c for c in others if isinstance(c, SkinscanProtocol) and c.idle]
        if not idle:
            return False
        _evicting()
        min(idle, key=lambda c: c._ready_at).transport.close()
        return True

    # --- the read timeouts -------------------------------------------------------------------------------------

    def _deadline(self) -> float | None:
        """When the client's time to send the current request runs out; None while it is not sending one."""
        limits, state = self.limits, self.conn.their_state
        if state is h11.IDLE:
            return self._ready_at + min(limits.header_timeout_s, limits.read_timeout_s)
        if state is h11.SEND_BODY:
            return min(self._last_read + limits.body_timeout_s, self._ready_at + limits.read_timeout_s)
        return None

    def _arm(self) -> None:
        # one timer per connection, moved only when a deadline comes closer; one that finds the client has sent
        # more meanwhile sets itself again
        if self.transport.is_closing():
            return
        deadline = self._deadline()
        if deadline is None or (self._watchdog is not None and self._watchdog.when() <= deadline):
            return
        self._disarm()
        self._watchdog = self.loop.call_at(deadline, self._on_deadline)

    def _disarm(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _on_deadline(self) -> None:
        self._watchdog = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if self.conn.their_state is h11.SEND_BODY and self.flow.read_paused:
            # the app has not taken the body so far, so we stopped reading: that wait is ours, not the client's,
            # who gets a body_timeout_s to go on once we read again, whatever the deadline of the whole request
            self._last_read = now
            self._ready_at = max(self._ready_at, now + self.limits.body_timeout_s - self.limits.read_timeout_s)
        deadline = self._deadline()
        if deadline is None:
            return
        if now < deadline:
            self._arm()
            return
        self._time_out(now)

    def _time_out(self, now: float) -> None:
        limits = self.limits
        if self.conn.their_state is h11.IDLE:
            if not self.conn.trailing_data[0]:  # not a byte of a request: nothing to answer
                self.transport.close()
                return
            detail = f"the request's headers did not arrive within {limits.header_timeout_s:g} s"
            answer = True
        else:
            if now >= self._ready_at + limits.read_timeout_s:
                detail = f"the request did not arrive in full within {limits.read_timeout_s:g} s"
            else:
                detail = f"the request's body stopped arriving for {limits.body_timeout_s:g} s"
            cycle = self.cycle
            answer = cycle is None or not cycle.response_started  # else the app answered early, as with a 413
            if cycle is not None and not cycle.response_complete:
                # the app, waiting for the body, gets a disconnect, and what it sends afterwards goes nowhere
                cycle.disconnected = True
                cycle.message_event.set()
        _timing_out()
        if answer:
            self.transport.write(_raw_response(408, detail))
        self.transport.close()


def _json_error(status: int, detail: str) -> bytes:
    return json.dumps(error_body(status, detail), separators=(",", ":")).encode()


def _raw_response(status: int, detail: str) -> bytes:
    """A complete JSON error response, written past h11 (whose state has no room for one while headers arrive)."""
    body = _json_error(status, detail)
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "content-type: application/json",
             f"content-length: {len(body)}", "connection: close",
             *(f"{k}: {v}" for k, v in SECURITY_HEADERS.items())]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _at_capacity(scope: Any, receive: Any, send: Any) -> None:
    """The app a connection refused at the cap gets instead of ours: a 503, and the connection closes after it."""
    body = _json_error(503, "the server has too many connections open; try again in a moment")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close"), (b"retry-after", b"1"), *_SECURITY_HEADERS]  # fmt: skip
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})

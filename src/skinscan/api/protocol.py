"""The HTTP protocol `skinscan serve` runs on: uvicorn's own, with Nagle's algorithm off on every connection."""

from __future__ import annotations

import asyncio
import socket

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _UvicornProtocol
except ImportError:  # httptools is optional; uvicorn's pure-Python h11 parser does the same job, slower
    from uvicorn.protocols.http.h11_impl import H11Protocol as _UvicornProtocol  # type: ignore[assignment]


class NoDelayProtocol(_UvicornProtocol):
    """uvicorn's HTTP protocol that turns TCP_NODELAY on for each connection it serves.

    asyncio sets TCP_NODELAY only on connections accepted from a listener created with proto IPPROTO_TCP. With
    --workers N uvicorn binds the listener itself with proto 0 (Kludex/uvicorn#3149), so Nagle's algorithm stays on:
    the response body, written after its headers, waits for the client's delayed ACK of them, 40 ms or more on
    Linux for every request on a kept-alive connection.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)  # type: ignore[arg-type]

"""The listening socket of ``manage.py serve`` and what it tells the operator.

Guarantees: the port is bound before the server starts, so a port in use is a clear error
naming the port and how to pick another, not a traceback after a "running on" line; the
"listening" message (and any banner the caller adds) is printed only once the server
accepts connections.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any

import uvicorn


class PortUnavailableError(Exception):
    """The address cannot be bound; the message says why and what to do."""


def bind(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket for ``host:port`` (IPv6 when ``host`` is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # connections whose socket says TCP. With proto 0 every response's body waited for the
    # client's delayed ACK of its headers: 40 ms added to each request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailableError(
                f"port {port} on {host} is already in use (is NeonPro already running?). Stop the other "
                f"process, or choose another port: `make run PORT={port + 1}` or `manage.py serve --port {port + 1}`."
            ) from None
        if exc.errno == errno.EACCES:
            raise PortUnavailableError(
                f"not allowed to listen on port {port} (ports below 1024 need privileges)"
            ) from None
        raise PortUnavailableError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def public_url(host: str, port: int) -> str:
    name = "localhost" if host in ("127.0.0.1", "::1", "localhost") else host
    return f"https://{name}:{port}/"


class AnnouncingServer(uvicorn.Server):
    """uvicorn's server, calling ``on_listening`` once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[], Any]) -> None:
        super().__init__(config)
        self._on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)  # returns only once listening (it exits otherwise)
        self._on_listening()

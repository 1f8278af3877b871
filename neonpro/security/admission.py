"""Admission control: a bound on the HTTP requests one server process works on at once.

Guarantees: at most ``NEONPRO_MAX_IN_FLIGHT`` requests of a process run Django at a time
(each holds a database connection for its whole transaction, so the bound is what keeps the
process inside its connection pool); the next ones wait, cheaply, on the event loop, in
arrival order, for at most ``NEONPRO_ADMISSION_WAIT`` seconds; a request that is still
waiting then gets a clean ``503`` with ``Retry-After`` (JSON under ``/api/``) and never
reaches the database. A burst is queued rather than piled onto PostgreSQL, and an overload
that lasts is answered in bounded time instead of by requests that hang.

Sign-in posts (``NEONPRO_SIGNIN_PATHS``) first queue in a lane of their own, as wide as the
password-hashing bound (``NEONPRO_SIGNIN_HASH_CONCURRENCY``, neonpro/accounts/hashing.py), for
at most ``NEONPRO_SIGNIN_WAIT`` seconds (then the same 503, saying sign-in is busy), and only
then take a request slot: a shift-change rush holds at most that many slots, and clinical
requests keep the rest.

``/healthz`` skips the queue: a liveness probe must not be refused because the app is busy.
WebSockets (Channels) are not HTTP and pass through.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

from neonpro.accounts.hashing import concurrency as hashing_concurrency
from neonpro.security.error_body import error_body

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

EXEMPT_PATHS = ("/healthz",)
DEFAULT_MAX_IN_FLIGHT = 8
DEFAULT_WAIT_SECONDS = 10.0


def max_in_flight() -> int:
    """The configured bound; by default the size of the ``default`` database pool."""
    configured = getattr(settings, "NEONPRO_MAX_IN_FLIGHT", None)
    if configured:
        return int(configured)
    pool = settings.DATABASES.get("default", {}).get("OPTIONS", {}).get("pool")
    if isinstance(pool, dict) and pool.get("max_size"):
        return int(pool["max_size"])
    return DEFAULT_MAX_IN_FLIGHT


SIGNIN_BUSY = "Sign-in is busy; try again in a few seconds."


def busy_response(
    path: str, retry_after: int, detail: str = "The service is busy; try again shortly."
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The 503 of a request that could not be admitted (or of a database that is not there)."""
    if path.startswith("/api/"):
        body, content_type = json.dumps(error_body("service_unavailable", detail)).encode(), b"application/json"
    else:
        page = f"<!doctype html><title>Busy</title><h1>Service busy</h1><p>{detail}</p>"
        body, content_type = page.encode(), b"text/html; charset=utf-8"
    headers = [
        (b"content-type", content_type),
        (b"retry-after", str(retry_after).encode()),
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(body)).encode()),
    ]
    return 503, headers, body


class AdmissionControl:
    """ASGI middleware around Django's HTTP application (see ``neonpro/asgi.py``)."""

    def __init__(self, app: ASGIApp, *, limit: int | None = None, wait: float | None = None) -> None:
        self.app = app
        self.limit = limit if limit is not None else max_in_flight()
        if wait is None:
            wait = float(getattr(settings, "NEONPRO_ADMISSION_WAIT", DEFAULT_WAIT_SECONDS))
        self.wait = wait
        self._semaphore: asyncio.Semaphore | None = None
        self.in_flight = 0
        self.refused = 0
        self.signin_paths = frozenset(getattr(settings, "NEONPRO_SIGNIN_PATHS", ()))
        self.signin_limit = hashing_concurrency()
        self.signin_wait = float(getattr(settings, "NEONPRO_SIGNIN_WAIT", DEFAULT_WAIT_SECONDS))
        self._signin_semaphore: asyncio.Semaphore | None = None
        self.signins_refused = 0

    def _gate(self) -> asyncio.Semaphore:
        if self._semaphore is None:  # bound to the running loop, created on first use
            self._semaphore = asyncio.Semaphore(self.limit)
        return self._semaphore

    def _signin_gate(self) -> asyncio.Semaphore:
        if self._signin_semaphore is None:
            self._signin_semaphore = asyncio.Semaphore(self.signin_limit)
        return self._signin_semaphore

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if scope.get("method") == "POST" and scope.get("path", "") in self.signin_paths:
            await self._sign_in(scope, receive, send)
            return
        await self._admitted(scope, receive, send)

    async def _sign_in(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self._signin_gate()
        try:
            await asyncio.wait_for(lane.acquire(), timeout=self.signin_wait)
        except TimeoutError:
            self.signins_refused += 1
            status, headers, body = busy_response(
                scope.get("path", ""), retry_after=max(1, round(self.signin_wait / 4)), detail=SIGNIN_BUSY
            )
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            await self._admitted(scope, receive, send)
        finally:
            lane.release()

    async def _admitted(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate = self._gate()
        try:
            await asyncio.wait_for(gate.acquire(), timeout=self.wait)
        except TimeoutError:
            self.refused += 1
            if self.refused == 1 or self.refused % 100 == 0:
                logger.warning(
                    "admission: %d requests refused so far (more than %d in flight for %.1f s)",
                    self.refused,
                    self.limit,
                    self.wait,
                )
            status, headers, body = busy_response(scope.get("path", ""), retry_after=max(1, round(self.wait / 4)))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            gate.release()

"""Admission control queues a burst and refuses, cleanly, only what waited too long.

The real middleware on a real event loop, in front of an ASGI app that holds each request
until the test lets it go (what a request waiting on the database looks like to it).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from neonpro.security.admission import AdmissionControl, max_in_flight


class Held:
    """An ASGI app whose requests finish when ``release`` is set; counts what ran at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running = 0
        self.peak = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
        finally:
            self.running -= 1


async def _request(app: Any, path: str = "/api/v1/patients/") -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "path": path}, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


def test_a_burst_beyond_the_bound_waits_its_turn_and_all_succeed() -> None:
    async def scenario() -> tuple[list[int], int]:
        held = Held()
        gate = AdmissionControl(held, limit=2, wait=5)
        tasks = [asyncio.create_task(_request(gate)) for _ in range(7)]
        await asyncio.sleep(0.05)
        assert held.running == 2 and gate.in_flight == 2  # five queued, not running
        held.release.set()
        done = await asyncio.gather(*tasks)
        return [status for status, _, _ in done], held.peak

    statuses, peak = asyncio.run(scenario())

    assert statuses == [200] * 7 and peak == 2


def test_what_waits_past_the_bound_gets_a_json_503_with_retry_after() -> None:
    async def scenario() -> list[tuple[int, dict[bytes, bytes], bytes]]:
        held = Held()
        gate = AdmissionControl(held, limit=1, wait=0.1)
        first = asyncio.create_task(_request(gate))
        await asyncio.sleep(0.01)
        refused = [await _request(gate), await _request(gate, "/records/")]
        held.release.set()
        return [await first, *refused]

    (ok, _, _), (api_status, api_headers, api_body), (page_status, page_headers, page_body) = asyncio.run(scenario())

    assert ok == 200
    assert api_status == 503 and api_headers[b"content-type"] == b"application/json"
    assert int(api_headers[b"retry-after"]) >= 1 and "busy" in json.loads(api_body)["error"]["message"]
    assert page_status == 503 and page_headers[b"content-type"].startswith(b"text/html") and b"busy" in page_body
    assert int(page_headers[b"content-length"]) == len(page_body)


def test_health_probes_and_websockets_skip_the_queue() -> None:
    async def scenario() -> list[str]:
        seen: list[str] = []
        held = Held()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope["type"] + ":" + scope.get("path", ""))
            if scope.get("path") == "/busy":
                await held(scope, receive, send)

        gate = AdmissionControl(app, limit=1, wait=0.05)
        busy = asyncio.create_task(_request(gate, "/busy"))
        await asyncio.sleep(0.01)
        await gate({"type": "http", "path": "/healthz"}, None, lambda message: asyncio.sleep(0))
        await gate({"type": "websocket", "path": "/ws/"}, None, None)
        held.release.set()
        await busy
        return seen

    assert asyncio.run(scenario()) == ["http:/busy", "http:/healthz", "websocket:/ws/"]


@pytest.mark.parametrize(
    ("configured", "pool", "expected"),
    [(5, None, 5), (None, {"max_size": 12}, 12), (None, None, 8), (None, True, 8)],
)
def test_the_bound_defaults_to_the_request_pool(
    settings: Any, monkeypatch: pytest.MonkeyPatch, configured: Any, pool: Any, expected: int
) -> None:
    settings.NEONPRO_MAX_IN_FLIGHT = configured
    monkeypatch.setitem(settings.DATABASES["default"], "OPTIONS", {} if pool is None else {"pool": pool})

    assert max_in_flight() == expected

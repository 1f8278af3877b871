"""Password hashing is bounded per process, runs at a lower priority, and a sign-in that cannot
get a hashing slot in time is a 503 with Retry-After, not a pile-up of hashing threads.

Real threads and a real event loop; what the tests hold a slot with is a hash that finishes
when the test sets an event.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password
from django.test import Client

from neonpro.accounts import hashing
from neonpro.accounts.backends import BoundedHashingBackend
from neonpro.accounts.hashing import HashingLane, SignInBusyError, lane
from neonpro.security.admission import SIGNIN_BUSY, AdmissionControl
from neonpro.security.unavailable import infrastructure_reason
from tests.neonpro.test_admission import Held

PASSWORD = "correct horse battery staple"


class CheapPBKDF2(PBKDF2PasswordHasher):
    """A PBKDF2 whose cost differs from the stored one: Django asks for a rehash."""

    iterations = 1_000


def _holder(lane_: HashingLane) -> tuple[threading.Thread, threading.Event, threading.Event]:
    """A thread whose 'hash' holds one slot of ``lane_`` until ``release`` is set."""
    entered, release = threading.Event(), threading.Event()

    def held_hash() -> str:
        entered.set()
        release.wait(10)
        return "done"

    thread = threading.Thread(target=lane_.run, args=(held_hash,))
    thread.start()
    assert entered.wait(10)
    return thread, entered, release


def test_at_most_the_bound_hashes_at_once_and_the_rest_wait_their_turn() -> None:
    bound = HashingLane(concurrency=2, wait=10, nice=0)
    running, peak, arrivals, lock = 0, 0, 0, threading.Lock()
    first_two_in, release = threading.Barrier(3, timeout=10), threading.Event()

    def hash_() -> int:
        nonlocal running, peak, arrivals
        with lock:
            running, arrivals = running + 1, arrivals + 1
            peak, arrival = max(peak, running), arrivals
        if arrival <= 2:
            first_two_in.wait()  # the first two meet the test here: two really run at once
        release.wait(10)
        with lock:
            running -= 1
        return 1

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(bound.run(hash_))) for _ in range(6)]
    for thread in threads:
        thread.start()
    first_two_in.wait()
    assert running == 2  # both slots taken; the other four wait for one
    release.set()
    for thread in threads:
        thread.join(10)

    assert results == [1] * 6 and peak == 2 and arrivals == 6 and bound.refused == 0


def test_a_hash_that_cannot_start_within_the_wait_is_refused_and_the_slot_serves_again() -> None:
    bound = HashingLane(concurrency=1, wait=0.2, nice=0)
    thread, _, release = _holder(bound)

    with pytest.raises(SignInBusyError, match=r"within 0\.2 s"):
        bound.run(make_password, PASSWORD)
    release.set()
    thread.join(10)

    assert bound.refused == 1
    assert bound.run(lambda: "free again") == "free again"


def test_hashes_run_on_threads_of_lower_priority_than_the_requests() -> None:
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    bound = HashingLane(concurrency=1, wait=5, nice=7)

    theirs = bound.run(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    assert theirs == min(19, mine + 7)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine  # the caller's is untouched


def test_the_lane_follows_the_settings(settings: Any) -> None:
    settings.NEONPRO_SIGNIN_HASH_CONCURRENCY, settings.NEONPRO_SIGNIN_WAIT, settings.NEONPRO_SIGNIN_HASH_NICE = 3, 4, 2
    first = lane()
    assert lane() is first and (first.concurrency, first.wait, first.nice) == (3, 4.0, 2)
    settings.NEONPRO_SIGNIN_HASH_CONCURRENCY = 0  # nonsense is one slot, not none

    assert lane() is not first and lane().concurrency == 1


@pytest.mark.django_db
def test_the_backend_answers_as_django_does_through_the_lane(
    settings: Any, monkeypatch: pytest.MonkeyPatch, user_factory: Any
) -> None:
    user = user_factory(role="clinician")
    ran: list[str] = []
    real_run = HashingLane.run

    def counting(self: HashingLane, function: Any, *args: Any) -> Any:
        ran.append(function.__name__)
        return real_run(self, function, *args)

    monkeypatch.setattr(HashingLane, "run", counting)
    backend = BoundedHashingBackend()

    assert backend.authenticate(None, username=user.username, password=PASSWORD) == user
    assert backend.authenticate(None, username=user.username, password="wrong") is None
    assert backend.authenticate(None, username="nobody-at-all", password=PASSWORD) is None
    assert backend.authenticate(None, username=user.username) is None
    assert backend.authenticate(None, password=PASSWORD) is None
    assert backend.authenticate(None, **{"username": None, "password": PASSWORD}) is None
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert backend.authenticate(None, username=user.username, password=PASSWORD) is None
    # The unknown username still cost one hash; the missing fields none.
    assert ran == ["verify_password", "verify_password", "make_password", "verify_password"]


@pytest.mark.django_db
def test_a_hash_of_another_cost_is_upgraded_at_sign_in_through_the_lane(settings: Any, user_factory: Any) -> None:
    user = user_factory(role="clinician")
    old = user.password
    settings.PASSWORD_HASHERS = [f"{__name__}.CheapPBKDF2", *settings.PASSWORD_HASHERS]

    signed_in = BoundedHashingBackend().authenticate(None, username=user.username, password=PASSWORD)

    user.refresh_from_db()
    assert signed_in == user and user.password != old and user.password.startswith("pbkdf2_sha256$1000$")
    assert BoundedHashingBackend().authenticate(None, username=user.username, password=PASSWORD) == user


@pytest.mark.django_db
def test_the_async_variant_goes_through_the_lane_too(monkeypatch: pytest.MonkeyPatch, user_factory: Any) -> None:
    user = user_factory(role="clinician")
    ran: list[str] = []
    real_run = HashingLane.run

    def counting(self: HashingLane, function: Any, *args: Any) -> Any:
        ran.append(function.__name__)
        return real_run(self, function, *args)

    monkeypatch.setattr(HashingLane, "run", counting)

    found = async_to_sync(BoundedHashingBackend().aauthenticate)(None, username=user.username, password=PASSWORD)

    assert found == user and ran == ["verify_password"]


@pytest.mark.django_db
def test_the_sign_in_form_answers_503_with_retry_after_when_no_slot_frees(settings: Any, user_factory: Any) -> None:
    user = user_factory(role="clinician")
    settings.NEONPRO_SIGNIN_WAIT = 0.2
    settings.SECURE_SSL_REDIRECT = False
    thread, _, release = _holder(lane())
    try:
        answer = Client(raise_request_exception=False).post(
            "/accounts/login/", {"username": user.username, "password": PASSWORD}
        )
    finally:
        release.set()
        thread.join(10)

    assert answer.status_code == 503 and int(answer["Retry-After"]) >= 1
    assert b"sign-in is busy" in answer.content
    assert infrastructure_reason(SignInBusyError("x")) == "sign-in is busy (too many at once)"


def _post(app: Any, path: str) -> Any:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def call() -> Any:
        await app({"type": "http", "method": "POST", "path": path}, receive, send)
        return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]

    return call()


def test_sign_in_posts_queue_in_their_own_lane_and_leave_the_request_slots_to_the_rest(settings: Any) -> None:
    settings.NEONPRO_SIGNIN_HASH_CONCURRENCY = 1
    settings.NEONPRO_SIGNIN_PATHS = ["/accounts/login/"]

    async def scenario() -> tuple[list[Any], int, int]:
        held = Held()
        gate = AdmissionControl(held, limit=3, wait=5)
        gate.signin_wait = 0.2
        rush = [asyncio.create_task(_post(gate, "/accounts/login/")) for _ in range(5)]
        clinical = [asyncio.create_task(_post(gate, "/api/v1/patients/search/")) for _ in range(2)]
        while held.running < 3:  # one sign-in and both clinical requests hold the three slots
            await asyncio.sleep(0)
        in_flight = gate.in_flight
        refused = await asyncio.gather(*rush[1:])  # the other sign-ins waited 0.2 s in their lane
        held.release.set()
        return [await rush[0], *refused, *await asyncio.gather(*clinical)], in_flight, gate.signins_refused

    answers, in_flight, signins_refused = asyncio.run(scenario())

    statuses = [status for status, _, _ in answers]
    assert in_flight == 3 and statuses == [200, 503, 503, 503, 503, 200, 200] and signins_refused == 4
    _, headers, body = answers[1]
    assert int(headers[b"retry-after"]) >= 1 and SIGNIN_BUSY.encode() in body
    assert hashing.DEFAULT_CONCURRENCY == 1

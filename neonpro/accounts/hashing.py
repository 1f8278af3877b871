"""Password hashing that cannot starve clinical requests.

A password hash is deliberately expensive (Django's PBKDF2 costs about 0.3 s of a core here),
and it releases the GIL: unbounded, a shift-change rush of sign-ins would put one hashing
thread per request in flight on every core, and clinical requests would get what is left.

So each process hashes in a lane of its own: at most ``NEONPRO_SIGNIN_HASH_CONCURRENCY``
hashes at a time (default 1), on dedicated threads whose scheduling priority is lowered by
``NEONPRO_SIGNIN_HASH_NICE`` (default 10: when the CPU is contended, clinical threads get
the larger share; when it is idle, hashing runs at full speed). A hash that cannot start
within ``NEONPRO_SIGNIN_WAIT`` seconds raises :class:`SignInBusyError`, which the app answers with
503 and ``Retry-After`` ("sign-in is busy", neonpro/security/unavailable.py); nothing is
half done, since no password was checked. The ASGI admission control queues sign-in
requests in a lane of the same width before they take a request slot
(neonpro/security/admission.py), so a rush never fills the slots clinical requests need.

Whatever ``PASSWORD_HASHERS`` names is used unchanged: the lane runs Django's own
``verify_password`` / ``make_password``. The cost is the hasher's (the sign-in issue picks it).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.conf import settings

T = TypeVar("T")
DEFAULT_CONCURRENCY = 1
DEFAULT_WAIT_SECONDS = 10.0
DEFAULT_NICE = 10


class SignInBusyError(Exception):
    """Every hashing slot stayed taken for the whole wait: answer 503, the client retries."""


def _lower_priority(nice: int) -> None:
    """Runs on each hashing thread as it starts: Linux schedules threads by their own nice value."""
    if nice > 0:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


class HashingLane:
    def __init__(self, *, concurrency: int, wait: float, nice: int) -> None:
        self.concurrency, self.wait, self.nice = concurrency, wait, nice
        self._slots = threading.BoundedSemaphore(concurrency)
        self._executor = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="password-hash", initializer=_lower_priority, initargs=(nice,)
        )
        self.refused = 0

    def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on a hashing thread, once a slot is free within the wait."""
        if not self._slots.acquire(timeout=self.wait):
            self.refused += 1
            raise SignInBusyError(f"no password-hashing slot came free within {self.wait:.1f} s")
        try:
            return self._executor.submit(function, *args).result()
        finally:
            self._slots.release()


_lane: HashingLane | None = None
_lane_lock = threading.Lock()


def concurrency() -> int:
    return max(1, int(getattr(settings, "NEONPRO_SIGNIN_HASH_CONCURRENCY", DEFAULT_CONCURRENCY)))


def lane() -> HashingLane:
    """This process's lane, made on first use from the settings of that moment (and made
    again when they have changed since, as in tests)."""
    global _lane
    wanted = (
        concurrency(),
        float(getattr(settings, "NEONPRO_SIGNIN_WAIT", DEFAULT_WAIT_SECONDS)),
        int(getattr(settings, "NEONPRO_SIGNIN_HASH_NICE", DEFAULT_NICE)),
    )
    with _lane_lock:
        if _lane is None or (_lane.concurrency, _lane.wait, _lane.nice) != wanted:
            # A replaced lane's threads end once it is no longer referenced (and its hashes done).
            _lane = HashingLane(concurrency=wanted[0], wait=wanted[1], nice=wanted[2])
        return _lane

"""Calls to the key provider that a slow or unreachable KMS/HSM cannot pile up behind.

Guarantees, per process:

* **No lock is held across a provider call.** Each call runs on a short-lived worker thread;
  the lock here only guards two dicts for microseconds.
* **One in-flight call per key.** Callers asking for a key that is already being unwrapped
  wait for that call instead of making another (single flight).
* **A deadline per request.** A caller waits at most ``NEONPRO_KEY_PROVIDER_DEADLINE``
  seconds (default 5), then gets a transient ProviderError, however many callers are waiting
  and however long the provider's own time-outs are (AWS: 2 s connect + 5 s read, two
  attempts). The call itself goes on in the background and its result is dropped.
* **Failures are remembered briefly.** A failed call is cached for
  ``NEONPRO_KEY_PROVIDER_FAILURE_TTL`` seconds (default 5; 0 turns it off): callers in that
  window fail at once with the same message. A transient failure (time-out, throttling,
  device gone) is also remembered for the master key, so an outage costs one call per master
  key per window, not one per data key or per request.

The plaintext a call returns is handed to its waiters and never stored here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

from keys.conf import keys_settings
from keys.exceptions import KeysError, ProviderError

_monotonic = time.monotonic


class _Flight:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: bytes | None = None
        self.error: KeysError | None = None


def _copy(error: KeysError, suffix: str = "") -> KeysError:
    """A fresh exception per waiter (one instance raised in several threads would share its
    traceback), keeping the type and permanence."""
    if isinstance(error, ProviderError):
        return type(error)(f"{error}{suffix}", permanent=error.permanent)
    return error


class ProviderCalls:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}
        self._failures: dict[Hashable, tuple[float, KeysError]] = {}

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()

    def call(self, key: Hashable, fn: Callable[[], bytes], *, master_key_id: str = "") -> bytes:
        """``fn()`` (a provider call returning a key), single-flight per ``key``, within the deadline."""
        deadline = keys_settings.PROVIDER_DEADLINE
        master = ("master", master_key_id) if master_key_id else None
        with self._lock:
            now = _monotonic()
            for name in (key, master):
                failed = self._failures.get(name) if name is not None else None
                if failed is not None:
                    if failed[0] > now:
                        raise _copy(failed[1], f" (remembered for {failed[0] - now:.1f} s more)")
                    del self._failures[name]
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _Flight()
                worker = threading.Thread(
                    target=self._run, args=(key, master, flight, fn), name="neonpro-key-provider", daemon=True
                )
                worker.start()
        if not flight.done.wait(deadline):
            raise ProviderError(
                f"the key provider did not answer within {deadline:g} s (NEONPRO_KEY_PROVIDER_DEADLINE); retry later",
                permanent=False,
            )
        if flight.error is not None:
            raise _copy(flight.error)
        assert flight.result is not None
        return flight.result

    def _run(self, key: Hashable, master: Hashable | None, flight: _Flight, fn: Callable[[], bytes]) -> None:
        try:
            flight.result = fn()
        except KeysError as exc:
            flight.error = exc
        except Exception as exc:  # noqa: BLE001 - a provider bug must reach the caller, not kill a thread
            flight.error = ProviderError(f"the key provider failed ({type(exc).__name__})", permanent=False)
        with self._lock:
            self._flights.pop(key, None)
            ttl = keys_settings.PROVIDER_FAILURE_TTL
            if flight.error is not None and ttl > 0:
                until = _monotonic() + ttl
                self._failures[key] = (until, flight.error)
                if master is not None and isinstance(flight.error, ProviderError) and not flight.error.permanent:
                    self._failures[master] = (until, flight.error)
        flight.done.set()


provider_calls = ProviderCalls()

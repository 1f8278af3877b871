"""A slow or unreachable provider holds up no other request (keys.flight, issue 18 item 8).

The provider is a fake behind the real interface (tests/keys/slow_provider.py); the data keys
are real rows, committed, read by real threads on their own database connections through the
process's one keyring, as concurrent requests of one worker process would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connections

from keys.exceptions import ProviderError
from tests.conftest import in_thread
from tests.keys.slow_provider import SlowProvider

pytestmark = pytest.mark.django_db


@pytest.fixture
def slow_keys(settings: Any) -> Iterator[list[int]]:
    """Four decrypt-only field keys wrapped by the slow provider, committed."""
    from keys.keyring import keyring
    from keys.models import DataKey
    from keys.providers import reset_provider
    from keys.services import create_data_key

    reset_provider()
    keyring.clear()
    settings.NEONPRO_KEY_PROVIDER = "tests.keys.slow_provider.SlowProvider"
    settings.NEONPRO_KEY_PROVIDER_DEADLINE = 10
    reset_provider()
    SlowProvider.reset()
    ids = in_thread(lambda: [create_data_key("field", activate=False).pk for _ in range(4)])
    try:
        yield ids
    finally:
        in_thread(lambda: DataKey.objects.filter(pk__in=ids).delete())  # whole-table tests must not see them
        SlowProvider.reset()
        keyring.clear()


def _concurrently(calls: list[Callable[[], Any]]) -> list[tuple[float, Any]]:
    """Run each call on its own thread at once; (seconds taken, result or exception) each."""
    start = threading.Barrier(len(calls))
    results: list[tuple[float, Any]] = [(0.0, None)] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        start.wait()
        began = time.monotonic()
        try:
            outcome: Any = call()
        except BaseException as exc:
            outcome = exc
        finally:
            connections.close_all()
        results[i] = (time.monotonic() - began, outcome)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_four_unwraps_of_different_keys_run_at_once(slow_keys: list[int]) -> None:
    from keys.keyring import keyring

    SlowProvider.reset(delay=2.0)
    results = _concurrently([lambda k=k: keyring.aead(k) for k in slow_keys])
    times = sorted(t for t, _ in results)
    assert all(not isinstance(r, BaseException) for _, r in results), results
    # Serialised behind one lock they finished at 2, 4, 6 and 8 s.
    assert times[-1] < 3.5, times
    assert SlowProvider.calls == 4 and SlowProvider.most_at_once == 4


def test_one_call_per_key_however_many_callers(slow_keys: list[int]) -> None:
    from keys.keyring import keyring

    SlowProvider.reset(delay=2.0)
    results = _concurrently([lambda: keyring.aead(slow_keys[0]) for _ in range(4)])
    assert all(not isinstance(r, BaseException) for _, r in results), results
    assert max(t for t, _ in results) < 3.5
    assert SlowProvider.calls == 1


def test_an_outage_fails_every_request_within_the_deadline(settings: Any, slow_keys: list[int]) -> None:
    from keys.keyring import keyring

    settings.NEONPRO_KEY_PROVIDER_DEADLINE = 0.5
    settings.NEONPRO_KEY_PROVIDER_FAILURE_TTL = 30
    SlowProvider.reset(delay=3.0, failing=True)  # a KMS that times out after 3 s
    results = _concurrently([lambda k=k: keyring.aead(k) for k in slow_keys])
    for took, outcome in results:
        assert isinstance(outcome, ProviderError) and not outcome.permanent
        assert "did not answer within 0.5 s" in str(outcome)
        assert took < 1.5, took  # not n x 3 s
    assert SlowProvider.calls == 4

    time.sleep(3.2)  # the calls fail in the background and are remembered
    began = time.monotonic()
    for key_id in slow_keys * 2:  # eight more requests: every one fails at once
        with pytest.raises(ProviderError, match="KMS unreachable") as info:
            keyring.aead(key_id)
        assert not info.value.permanent and "remembered for" in str(info.value)
    assert time.monotonic() - began < 0.5
    assert SlowProvider.calls == 4  # the remembered failure made no further call


def test_a_remembered_failure_expires(settings: Any, slow_keys: list[int]) -> None:
    from keys.keyring import keyring

    settings.NEONPRO_KEY_PROVIDER_FAILURE_TTL = 0.3
    SlowProvider.reset(failing=True)
    with pytest.raises(ProviderError, match="KMS unreachable"):
        keyring.aead(slow_keys[0])
    with pytest.raises(ProviderError, match="remembered"):
        keyring.aead(slow_keys[1])  # same master key: the outage is remembered for it
    time.sleep(0.4)
    SlowProvider.reset()  # the provider is back
    assert keyring.aead(slow_keys[1]) is not None
    assert SlowProvider.calls == 1


def test_failure_ttl_zero_remembers_nothing(settings: Any, slow_keys: list[int]) -> None:
    from keys.keyring import keyring

    settings.NEONPRO_KEY_PROVIDER_FAILURE_TTL = 0
    SlowProvider.reset(failing=True)
    for _ in range(2):
        with pytest.raises(ProviderError, match="KMS unreachable"):
            keyring.aead(slow_keys[0])
    assert SlowProvider.calls == 2


@pytest.mark.parametrize("name", ["NEONPRO_KEY_PROVIDER_DEADLINE", "NEONPRO_KEY_PROVIDER_FAILURE_TTL"])
def test_negative_settings_are_refused(settings: Any, name: str) -> None:
    from keys.conf import keys_settings
    from keys.exceptions import KeysError

    setattr(settings, name, -1)
    with pytest.raises(KeysError, match=name):
        getattr(keys_settings, name.removeprefix("NEONPRO_KEY_"))


def test_a_provider_bug_reaches_the_caller_as_a_provider_error() -> None:
    from keys.flight import ProviderCalls

    def broken() -> bytes:
        raise ZeroDivisionError

    with pytest.raises(ProviderError, match=r"the key provider failed \(ZeroDivisionError\)"):
        ProviderCalls().call("k", broken)


def test_a_keys_error_from_the_call_reaches_the_caller_unchanged() -> None:
    from keys.exceptions import KeysError
    from keys.flight import ProviderCalls

    def unknown() -> bytes:
        raise KeysError("no such key")

    with pytest.raises(KeysError, match=r"^no such key$") as info:
        ProviderCalls().call("k", unknown)
    assert not isinstance(info.value, ProviderError)

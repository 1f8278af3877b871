from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


def audit_events(**filters: Any) -> list[Any]:
    from neonpro.audit.models import AuditEvent

    return list(AuditEvent.objects.filter(**filters).order_by("id"))


@contextmanager
def _own_served_app(suffix: str, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A served app on a database of its own (tests/served.py ``own_served_app``), for the tests
    that write through the live API (the fuzzer, the client): what they write never reaches
    the shared ``served_app`` other tests count rows in. Canaries are seeded (``.canaries``)."""
    from tests.api.live import seed_canaries
    from tests.served import own_served_app

    with own_served_app(suffix, django_db_blocker, tmp_path_factory) as app:
        app.canaries = seed_canaries(app)  # type: ignore[attr-defined]
        yield app


@pytest.fixture(scope="session")
def api_app(django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A served app of its own for the tests that write through the live API (the client)."""
    with _own_served_app("api", django_db_blocker, tmp_path_factory) as app:
        yield app


@pytest.fixture(scope="session")
def fuzz_app(django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Another, for the fuzzer: it registers patients and rewrites demographics at random, which
    no other test may then depend on."""
    with _own_served_app("fuzz", django_db_blocker, tmp_path_factory) as app:
        yield app

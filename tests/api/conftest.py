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
    """The real ``manage.py serve`` (tests/served.py) on a database of its own, for the tests
    that write through the live API (the fuzzer, the client): what they write never reaches
    the shared ``served_app`` other tests count rows in. Canaries are seeded (``.canaries``)."""
    from django.conf import settings
    from django.db import connections

    from tests.api.live import seed_canaries
    from tests.conftest import APP_ROLE, OWNER_ROLE, TEST_MASTER_KEY, superuser_dsn
    from tests.served import clone_database, drop_database, start_served_app, stop

    db = settings.DATABASES["default"]
    template = connections["default"].settings_dict["NAME"]
    name = f"{template}_{suffix}"
    with django_db_blocker.unblock():
        connections.close_all()
        clone_database(superuser_dsn(), template=template, name=name, owner=OWNER_ROLE)
    app = start_served_app(
        data_dir=tmp_path_factory.mktemp(suffix),
        database_url=f"postgres://{APP_ROLE}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}",
        database=name,
        redis_url=settings.REDIS_URL,
        master_key=TEST_MASTER_KEY,
        extra_env={},
    )
    try:
        app.canaries = seed_canaries(app)  # type: ignore[attr-defined]
        yield app
    finally:
        stop(app)
        drop_database(superuser_dsn(), name)


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

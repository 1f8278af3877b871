"""The fixture library: real PostgreSQL and Redis, a per-session master key, sample models."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import pytest
from django.conf import settings

TEST_MASTER_KEY = base64.b64encode(os.urandom(32)).decode()


def pytest_configure(config: pytest.Config) -> None:
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        pytest.exit(
            f"The suite runs on PostgreSQL, not {engine}: set DATABASE_URL=postgres://... (make test does).",
            returncode=3,
        )
    if not settings.REDIS_URL:
        pytest.exit("The suite needs Redis: set REDIS_URL=redis://... (make test does).", returncode=3)
    settings.NEONPRO_MASTER_KEY = TEST_MASTER_KEY
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Templates resolve {% static %} without a collectstatic manifest.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.STATIC_ROOT.mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> None:
    """Create the tables of the test-only sample models next to the migrated ones."""
    from django.db import connection

    from tests.keys.sample_models import SAMPLE_MODELS

    with django_db_blocker.unblock(), connection.schema_editor() as editor:  # type: ignore[attr-defined]
        for model in SAMPLE_MODELS:
            editor.create_model(model)


@pytest.fixture(autouse=True)
def _fresh_keyring() -> Iterator[None]:
    """Each test starts with an empty key cache (its data keys roll back with it)."""
    from keys.keyring import keyring
    from keys.providers import reset_provider

    reset_provider()
    keyring.clear()
    yield
    reset_provider()
    keyring.clear()


@pytest.fixture
def other_master_key(settings: pytest.FixtureRequest) -> Iterator[str]:
    """Switch the configured master key to a different one for the test."""
    key = base64.b64encode(os.urandom(32)).decode()
    settings.NEONPRO_MASTER_KEY = key  # type: ignore[attr-defined]
    yield key


@pytest.fixture
def patient_factory(db: None):  # type: ignore[no-untyped-def]
    import datetime as dt
    import itertools

    from patients.services import register_patient

    counter = itertools.count(1)

    def make(**overrides):  # type: ignore[no-untyped-def]
        n = next(counter)
        fields = {
            "full_name": f"Canary Person {n}",
            "date_of_birth": dt.date(1980, 1, 1) + dt.timedelta(days=n),
            "mrn": f"MRN-{n:06d}",
            "ssn": f"900-55-{n:04d}",
            "email": f"canary{n}@example.org",
            "phone": f"+1 555 {n:04d}",
            "address": f"{n} Canary Street, Testville",
        }
        fields.update(overrides)
        return register_patient(**fields)

    return make

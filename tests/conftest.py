"""The fixture library: real PostgreSQL and Redis, RLS-aware roles, personas, factories.

The test database is created and migrated by the *owner* role; every test then runs as the
*application* role (NOSUPERUSER NOBYPASSRLS, owns nothing), as production does — a suite
running as a superuser or table owner would see every row and prove nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.conf import settings
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

# A fresh master key per run. `make mutation` passes one in for all the processes of a run
# (they share one reused test database, whose data keys it wraps); it is never printed.
TEST_MASTER_KEY = os.environ.get("NEONPRO_TEST_MASTER_KEY") or base64.b64encode(os.urandom(32)).decode()
OWNER_ROLE = "neonpro_owner"
APP_ROLE = "neonpro_app"
_ADMIN_USER: dict[str, str] = {}

# Property tests are part of `make test`: the same examples on every run (derandomize), no
# example database, no per-example deadline (a first example may create keys). Each test
# sets a small max_examples through fuzz_budget(); NEONPRO_FUZZ_FACTOR=1000 multiplies every
# budget for a long local fuzzing session, with random examples.
_FUZZ_FACTOR = int(os.environ.get("NEONPRO_FUZZ_FACTOR", "1"))
hypothesis_settings.register_profile(
    "neonpro",
    derandomize=_FUZZ_FACTOR == 1,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
hypothesis_settings.load_profile("neonpro")


def fuzz_budget(examples: int) -> int:
    """The number of examples a property test runs: ``examples`` in `make test`."""
    return examples * _FUZZ_FACTOR


_CONFIGURED_DATABASES: dict[str, dict[str, Any]] = {}


def pytest_configure(config: pytest.Config) -> None:
    # A second session in the same process (mutmut runs several) starts from the configured
    # database names and users again, not from the test database and role the last one left.
    from django.db import connections

    for alias, db in settings.DATABASES.items():
        db.update(_CONFIGURED_DATABASES.setdefault(alias, {"NAME": db["NAME"], "USER": db["USER"]}))
    connections.close_all()
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
    # Encryption-count reservations share the test's connection: a side connection would sit
    # inside its own test transaction, holding the key row's lock against the test itself.
    settings.DATABASES.pop("keys", None)
    # Connections switch roles between the owner and the app (_use_role): no pools in this
    # process, whose pools would keep the first role. The served app (tests/served.py) pools.
    for db in settings.DATABASES.values():
        db.get("OPTIONS", {}).pop("pool", None)
    settings.NEONPRO_DB_APP_ROLE = APP_ROLE
    settings.NEONPRO_DB_OWNER_ROLE = OWNER_ROLE
    # Templates resolve {% static %} without a collectstatic manifest.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.STATIC_ROOT.mkdir(parents=True, exist_ok=True)


def _use_role(role: str) -> None:
    from django.db import connections

    for alias in settings.DATABASES:
        settings.DATABASES[alias]["USER"] = role
        settings.DATABASES[alias]["PASSWORD"] = ""
        connections[alias].close()
        connections[alias].settings_dict["USER"] = role
        connections[alias].settings_dict["PASSWORD"] = ""


def superuser_dsn(dbname: str = "postgres") -> str:
    db = settings.DATABASES["default"]
    user = _ADMIN_USER.get("user") or db["USER"]
    return f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} user={user} dbname={dbname}"


@pytest.fixture(scope="session")
def django_db_modify_db_settings() -> None:
    """Before the test database exists: create both roles (as the configured superuser), then
    let the owner role create and migrate the test database."""
    from neonpro.security.db import create_roles

    # Once per process: a second session in it (mutmut runs several) finds the owner role here.
    _ADMIN_USER.setdefault("user", settings.DATABASES["default"]["USER"])
    with psycopg.connect(superuser_dsn(), autocommit=True) as conn, conn.cursor() as cursor:
        create_roles(cursor, owner=OWNER_ROLE, app=APP_ROLE, database="postgres")
    _use_role(OWNER_ROLE)
    # Migrations write audit events (account and group changes after migrate) on the audit
    # alias, which pytest-django points at the test database only after migrating it.
    from django.db import connections

    test_name = connections["default"].creation._get_test_db_name()
    for alias in settings.DATABASES:
        if settings.DATABASES[alias].get("TEST", {}).get("MIRROR") == "default":
            connections[alias].settings_dict["NAME"] = test_name


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """After migrations (run as the owner): sample tables, grants, then switch to the app role."""
    from django.db import connection

    from neonpro.security.db import grant_runtime_privileges
    from tests.keys.migrate_in_models import MIGRATE_IN_MODELS
    from tests.keys.sample_models import SAMPLE_MODELS

    with django_db_blocker.unblock():
        existing = set(connection.introspection.table_names())  # a reused test database has them
        with connection.schema_editor() as editor:
            for model in [*SAMPLE_MODELS, *MIGRATE_IN_MODELS]:
                if model._meta.db_table not in existing:
                    editor.create_model(model)
        assert grant_runtime_privileges("default")
    _use_role(APP_ROLE)
    yield
    _use_role(OWNER_ROLE)


@pytest.fixture
def owner_cursor(django_db_blocker: Any) -> Iterator[Any]:
    """A separate connection as the table owner (a DBA's view), autocommit."""
    from django.db import connection

    dbname = connection.settings_dict["NAME"]
    db = settings.DATABASES["default"]
    with (
        psycopg.connect(
            f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} user={OWNER_ROLE} dbname={dbname}",
            autocommit=True,
        ) as conn,
        conn.cursor() as cursor,
    ):
        yield cursor


@pytest.fixture
def reinstall_identity_keys(owner_cursor: Any) -> Iterator[Callable[[], None]]:
    """Named bypass for tests that replace every data key in their transaction: install the
    identity signing keys the app now holds, as the owner does (`db identity-keys`), so
    row-level security accepts what it signs. Committed (the owner's own connection) and
    removed again afterwards; the keys already installed stay as they were."""
    from keys import crypto
    from keys.keyring import keyring
    from neonpro.security import identity

    owner_cursor.execute("SELECT key_id FROM neonpro_identity.signing_key")
    before = [row[0] for row in owner_cursor.fetchall()]

    def install() -> None:
        keyring.clear()
        for key in keyring.mac_keys("identity"):
            secret = crypto.derived_key(purpose="identity", label=identity.LABEL, key_id=key.key_id)
            owner_cursor.execute(
                "INSERT INTO neonpro_identity.signing_key (key_id, secret) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [key.key_id, secret],
            )

    yield install
    owner_cursor.execute("DELETE FROM neonpro_identity.signing_key WHERE NOT key_id = ANY(%s)", [before])


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
def other_master_key(settings: Any) -> Iterator[str]:
    """Switch the configured master key to a different one for the test."""
    key = base64.b64encode(os.urandom(32)).decode()
    settings.NEONPRO_MASTER_KEY = key
    yield key


@pytest.fixture
def system(db: None) -> Iterator[Any]:
    """Named bypass: the test body acts as the system (full access, as seeding does)."""
    from neonpro.security.context import system_context

    with system_context("test setup") as identity:
        yield identity


def in_thread(fn: Callable[..., Any], *args: Any, timeout: float = 60, **kwargs: Any) -> Any:
    """Run ``fn`` on its own database connections (autocommit: its writes are committed), as
    another process would, and return its result. The calling test must not hold the audit
    chain lock (i.e. must not have written audit events yet) if ``fn`` writes some."""
    import threading

    from django.db import connections

    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as exc:
            result["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"{fn!r} did not finish within {timeout}s (waiting for a lock the test holds?)")
    if "error" in result:
        raise result["error"]
    return result.get("value")


def as_identity(user: Any) -> Any:
    """Context manager: act as ``user`` (their role, their patient id) for a block."""
    from neonpro.security.context import acting_as, identity_for_user

    return acting_as(identity_for_user(user))


@pytest.fixture
def user_factory(db: None) -> Callable[..., Any]:
    from neonpro.accounts.models import User

    counter = itertools.count(1)

    def make(role: str = "clinician", **fields: Any) -> Any:
        n = next(counter)
        fields.setdefault("username", f"{role}{n}")
        return User.objects.create_user(password="correct horse battery staple", role=role, **fields)

    return make


@pytest.fixture
def patient_factory(db: None) -> Callable[..., Any]:
    from patients.services import register_patient

    counter = itertools.count(1)

    def make(**overrides: Any) -> Any:
        n = next(counter)
        fields: dict[str, Any] = {
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


@pytest.fixture
def care_team(db: None) -> Callable[..., Any]:
    """Put a clinician on a patient's care team (as the system)."""
    from neonpro.security.context import system_context
    from patients.models import CareTeamMembership

    def add(patient: Any, clinician: Any, **fields: Any) -> Any:
        with system_context("test care team"):
            return CareTeamMembership.objects.create(patient=patient, clinician=clinician, **fields)

    return add


def sign_in_as(client: Any, user: Any, *, reauthenticated: bool = True) -> Any:
    """Named bypass: the session the two-step sign-in leaves (neonpro.accounts.signin) —
    signed in, verified by a second factor where the user needs one (an authenticator is
    enrolled for them), and re-authenticated just now — without typing a password and code.
    Tests of sign-in itself go through the real views (tests/accounts/test_signin_*.py)."""
    import time

    from django_otp import DEVICE_ID_SESSION_KEY

    from neonpro.accounts import mfa
    from neonpro.accounts.mfa_models import TOTPDevice
    from neonpro.accounts.signin import REAUTH_AT

    client.force_login(user)
    session = client.session
    if mfa.needs_second_factor(user):
        device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
        if device is None:
            device = TOTPDevice.create_with_key(user=user, key=os.urandom(20), confirmed=True)
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    if reauthenticated:
        session[REAUTH_AT] = int(time.time())
    session.save()
    return client


@pytest.fixture
def api(client: Any) -> Any:
    """JSON over HTTPS as a given user: ``api(user).get(url)`` / ``.post(url, data)``."""

    from django.test import Client

    class As:
        def __init__(self, user: Any) -> None:
            self.client = Client()
            if user is not None:
                sign_in_as(self.client, user)

        def get(self, url: str) -> Any:
            return self.client.get(url, secure=True)

        def post(self, url: str, data: Any) -> Any:
            return self.client.post(url, data, content_type="application/json", secure=True)

        def patch(self, url: str, data: Any) -> Any:
            return self.client.patch(url, data, content_type="application/json", secure=True)

    return As


@pytest.fixture
def world(user_factory: Callable[..., Any], patient_factory: Callable[..., Any], care_team: Callable[..., Any]) -> Any:
    """Personas: two patients with accounts, their clinician, an outsider clinician, an admin."""

    class World:
        pass

    w = World()
    w.alice_user = user_factory("patient", username="alice")
    w.bob_user = user_factory("patient", username="bob")
    w.alice = patient_factory(full_name="Alice Canary", user=w.alice_user)
    w.bob = patient_factory(full_name="Bob Canary", user=w.bob_user)
    w.doctor = user_factory("clinician", username="dr.care")
    w.outsider = user_factory("clinician", username="dr.outside")
    w.admin = user_factory("admin", username="admin1", is_staff=True)
    care_team(w.alice, w.doctor)
    return w


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every database test may write audit events, which travel on the ``audit`` alias."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        uses_db = {"db", "transactional_db", "django_db_reset_sequences"} & set(getattr(item, "fixturenames", ()))
        if marker is None and not uses_db:
            continue
        if marker is not None and "databases" in marker.kwargs:
            continue
        args = marker.args if marker is not None else ()
        kwargs = {**(marker.kwargs if marker is not None else {}), "databases": ["default", "audit"]}
        item.add_marker(pytest.mark.django_db(*args, **kwargs), append=False)


@pytest.fixture(scope="session")
def served_app(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The real ``manage.py serve`` (TLS 1.3) on a clone of the migrated test database, as the
    application role, with the demo accounts seeded by ``demo seed`` (``.credentials``)."""
    from tests.served import own_served_app

    with own_served_app("served", django_db_blocker, tmp_path_factory) as app:
        yield app

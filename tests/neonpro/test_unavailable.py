"""The database going away, or holding a lock, is a clean JSON 503 with Retry-After — never an
HTML 500 or a request that hangs — and the service is back within 2 s of the fault ending.

Against the real served app (pooled connections, admission control, TLS), its database
behind a TCP proxy the test can cut (tests/faults.py), a lock taken by a real second session.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import requests
from django.conf import settings

from tests.conftest import APP_ROLE, OWNER_ROLE, TEST_MASTER_KEY, superuser_dsn
from tests.errors import error_message
from tests.faults import CuttableProxy
from tests.served import ServedApp, clone_database, drop_database, start_served_app, stop

pytestmark = pytest.mark.django_db
LOCK_TIMEOUT_MS = 700


@pytest.fixture(scope="module")
def fragile(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServedApp, CuttableProxy]]:
    from django.db import connections

    db = settings.DATABASES["default"]
    template = connections["default"].settings_dict["NAME"]
    name = f"{template}_fragile"
    with django_db_blocker.unblock():
        connections.close_all()
        clone_database(superuser_dsn(), template=template, name=name, owner=OWNER_ROLE)
    proxy = CuttableProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
    app = start_served_app(
        data_dir=tmp_path_factory.mktemp("fragile"),
        database_url=f"postgres://{APP_ROLE}@127.0.0.1:{proxy.port}/{name}",
        database=name,
        redis_url=settings.REDIS_URL,
        master_key=TEST_MASTER_KEY,
        extra_env={
            "NEONPRO_DB_LOCK_TIMEOUT_MS": LOCK_TIMEOUT_MS,
            "NEONPRO_DB_POOL_SIZE": 4,
            "NEONPRO_DB_POOL_TIMEOUT": 2,
        },
    )
    try:
        yield app, proxy
    finally:
        stop(app)
        proxy.close()
        drop_database(superuser_dsn(), name)


def _signed_in(app: ServedApp, username: str = "dr.house") -> requests.Session:
    session = requests.Session()
    session.trust_env, session.verify = False, str(app.cert)
    session.get(f"{app.url}/accounts/login/", timeout=10)
    answer = session.post(
        f"{app.url}/accounts/login/",
        headers={"Referer": f"{app.url}/accounts/login/"},
        data={
            "username": username,
            "password": app.credentials[username],
            "csrfmiddlewaretoken": session.cookies["__Host-csrftoken"],
        },
        timeout=10,
    )
    if "/accounts/login/verify/" in answer.url:  # the second step: a code from the authenticator
        from tests.served import totp_code

        answer = session.post(
            f"{app.url}/accounts/login/verify/",
            headers={"Referer": f"{app.url}/accounts/login/verify/"},
            data={
                "token": totp_code(app.totp_secrets[username], account=username),
                "csrfmiddlewaretoken": session.cookies["__Host-csrftoken"],
            },
            timeout=10,
        )
    assert answer.status_code == 200 and "/accounts/login/" not in answer.url
    return session


def _assert_json_503(answer: requests.Response, *words: str) -> None:
    assert answer.status_code == 503, answer.text[:300]
    assert answer.headers["Content-Type"] == "application/json"
    assert int(answer.headers["Retry-After"]) >= 1
    detail = error_message(answer)
    assert all(word in detail for word in words), detail


def test_a_table_lock_past_lock_timeout_is_a_json_503_and_writes_are_not_half_done(fragile: Any) -> None:
    app, _ = fragile
    client = _signed_in(app)
    patient = client.get(f"{app.url}/api/v1/patients/", timeout=10).json()[0]["id"]
    records = f"{app.url}/api/v1/patients/{patient}/records/"
    before = len(client.get(records, timeout=10).json())
    csrf = {"X-CSRFToken": client.cookies["__Host-csrftoken"], "Referer": f"{app.url}/"}

    with psycopg.connect(superuser_dsn(app.database)) as locker:
        locker.execute("LOCK TABLE records_medicalrecord IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        read = client.get(records, timeout=10)
        waited = time.monotonic() - started
        written = client.post(records, json={"diagnosis": "Fault-test diagnosis"}, headers=csrf, timeout=10)
        other = client.get(f"{app.url}/api/v1/patients/", timeout=10)

    _assert_json_503(read, "lock")
    assert LOCK_TIMEOUT_MS / 1000 <= waited < LOCK_TIMEOUT_MS / 1000 + 2  # bounded, not a hang
    _assert_json_503(written, "lock")
    assert other.status_code == 200  # what does not touch the locked table is served meanwhile
    after = client.get(records, timeout=10)
    assert after.status_code == 200 and len(after.json()) == before  # the refused write left nothing


def test_the_database_gone_is_a_503_everywhere_and_back_within_two_seconds(fragile: Any) -> None:
    app, proxy = fragile
    client = _signed_in(app)
    assert client.get(f"{app.url}/api/v1/patients/", timeout=10).status_code == 200

    proxy.cut()
    try:
        started = time.monotonic()
        api = client.get(f"{app.url}/api/v1/patients/", timeout=15)
        page = client.get(f"{app.url}/", timeout=15)
        elapsed = time.monotonic() - started
    finally:
        proxy.restore()
    restored = time.monotonic()

    _assert_json_503(api, "database")
    assert page.status_code == 503 and "text/html" in page.headers["Content-Type"]
    assert int(page.headers["Retry-After"]) >= 1
    assert elapsed < 2 * (2 + 1)  # each within the pool timeout (2 s) and a second
    while client.get(f"{app.url}/api/v1/patients/", timeout=10).status_code != 200:
        assert time.monotonic() - restored < 2, "not back within 2 s of the database returning"
        time.sleep(0.05)
    assert "Traceback" not in app.log.read_text()

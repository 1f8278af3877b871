"""Time limits on the application role, in its database only: what a transaction pooler keeps.

A transaction-mode pooler (pgbouncer) drops the startup options the app sends its limits in.
``set_role_limits`` (``manage.py db roles``) puts them on the role, ``IN DATABASE`` only —
roles are cluster-wide and shared by every database of the server — and leaves the owner
(migrations) without them. Proven through a real pgbouncer: a statement past the limit is
cancelled there, and the settings land in no other database and not on the role everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from psycopg.conninfo import conninfo_to_dict

from neonpro.db.limits import ROLE_LIMITS, set_role_limits
from tests.conftest import APP_ROLE, OWNER_ROLE, TEST_MASTER_KEY, superuser_dsn

pytestmark = pytest.mark.django_db
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
BASE_DIR = Path(__file__).resolve().parents[2]
# This suite's private port range for servers it starts (NEONPRO_TEST_PORT_BASE moves it).
PORT = int(os.environ.get("NEONPRO_TEST_PORT_BASE", "19200")) + 10


def _settings(dbname: str) -> dict[tuple[str, str], list[str]]:
    """pg_db_role_setting for our two roles: (role, database or '*') -> settings."""
    with psycopg.connect(superuser_dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT r.rolname, coalesce(d.datname, '*'), s.setconfig FROM pg_db_role_setting s "
            "JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase "
            "WHERE r.rolname IN (%s, %s)",
            [APP_ROLE, OWNER_ROLE],
        ).fetchall()
    return {(role, db): sorted(config) for role, db, config in rows if db in (dbname, "*")}


def _reset(dbname: str) -> None:
    with psycopg.connect(superuser_dsn(), autocommit=True) as conn:
        for role in (APP_ROLE, OWNER_ROLE):
            conn.execute(f'ALTER ROLE "{role}" IN DATABASE "{dbname}" RESET ALL')


@pytest.fixture
def dbname() -> Iterator[str]:
    name = str(connection.settings_dict["NAME"])
    _reset(name)
    yield name
    _reset(name)  # later tests' raw connections as the app role must not inherit a 300 ms limit


@contextmanager
def _pooler(dbname: str) -> Iterator[str]:
    """A transaction-mode pgbouncer in front of the test database, as the app role."""
    if not Path(PGBOUNCER).exists():
        pytest.fail("pgbouncer is not installed: `make test` installs it (Debian package pgbouncer)")
    tmp = Path(tempfile.mkdtemp(prefix="neonpro-pgbouncer-limits-"))  # pgbouncer runs as postgres
    tmp.chmod(0o777)
    (tmp / "users.txt").write_text(f'"{APP_ROLE}" ""\n')
    (tmp / "pgbouncer.ini").write_text(
        f"[databases]\nneonpro = host=127.0.0.1 port=5432 dbname={dbname} user={APP_ROLE}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {PORT}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {tmp / 'users.txt'}\npool_mode = transaction\n"
        "ignore_startup_parameters = options\n"
        f"default_pool_size = 1\nmax_client_conn = 10\nlogfile = {tmp / 'pgbouncer.log'}\n"
        f"pidfile = {tmp / 'pgbouncer.pid'}\n"
    )
    for path in tmp.iterdir():
        path.chmod(0o666)
    proc = subprocess.Popen(
        [PGBOUNCER, "-u", "postgres", str(tmp / "pgbouncer.ini")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    dsn = f"host=127.0.0.1 port={PORT} dbname=neonpro user={APP_ROLE}"
    deadline = time.monotonic() + 20
    while True:
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline or proc.poll() is not None:
                log = (tmp / "pgbouncer.log").read_text() if (tmp / "pgbouncer.log").exists() else ""
                proc.kill()
                pytest.fail(f"pgbouncer did not start: {log[-2000:]}")
            time.sleep(0.2)  # no event to await: pgbouncer says nothing when it listens
    try:
        yield dsn
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def _show(dsn: str, **kwargs: str) -> dict[str, str]:
    with psycopg.connect(dsn, autocommit=True, **kwargs) as conn:  # type: ignore[arg-type]
        shown = {name: conn.execute(f"SHOW {name}").fetchone() for name in ROLE_LIMITS}
    return {name: str(row[0]) for name, row in shown.items() if row is not None}


def test_the_app_role_keeps_its_limits_behind_a_transaction_pooler(dbname: str) -> None:
    limits = {"statement_timeout": 300, "lock_timeout": 200, "idle_in_transaction_session_timeout": 45_000}
    before = _settings(dbname)
    direct = f"host=127.0.0.1 port=5432 dbname={dbname} user={APP_ROLE}"
    assert _show(direct)["statement_timeout"] == "0", "negative control: without startup options, nothing limits"
    with psycopg.connect(superuser_dsn(dbname), autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute(f'ALTER ROLE "{OWNER_ROLE}" IN DATABASE "{dbname}" SET statement_timeout = 1234')
        set_role_limits(cursor, app=APP_ROLE, owner=OWNER_ROLE, database=dbname, limits=limits)

    with _pooler(dbname) as pooler:
        shown = _show(pooler)
        with psycopg.connect(pooler, autocommit=True) as conn, pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(2)")
    assert shown == {
        "statement_timeout": "300ms",
        "lock_timeout": "200ms",
        "idle_in_transaction_session_timeout": "45s",
    }
    after = _settings(dbname)
    assert after[(APP_ROLE, dbname)] == [
        "idle_in_transaction_session_timeout=45000ms",
        "lock_timeout=200ms",
        "statement_timeout=300ms",
    ]
    assert (OWNER_ROLE, dbname) not in after, "the owner (migrations) gets none: reset, not set"
    assert {k: v for k, v in after.items() if k[1] == "*"} == {k: v for k, v in before.items() if k[1] == "*"}, (
        "never on the role in every database"
    )
    owner = f"host=127.0.0.1 port=5432 dbname={dbname} user={OWNER_ROLE}"
    assert _show(owner)["statement_timeout"] == "0"


def test_db_roles_sets_them_from_the_settings(dbname: str) -> None:
    """`manage.py db roles`, run as a superuser against the database, applies NEONPRO_DB_*_TIMEOUT_MS."""
    admin = conninfo_to_dict(superuser_dsn(dbname))
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        DATABASE_URL=f"postgres://{admin['user']}@{admin['host']}:{admin['port']}/{dbname}",
        NEONPRO_DB_STATEMENT_TIMEOUT_MS="4321",
        NEONPRO_DB_LOCK_TIMEOUT_MS="321",
        NEONPRO_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS="54321",
        NEONPRO_DB_APP_ROLE=APP_ROLE,
        NEONPRO_DB_OWNER_ROLE=OWNER_ROLE,
        NEONPRO_MASTER_KEY=TEST_MASTER_KEY,  # it audits the change, under the suite's keys
    )
    done = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "db", "roles"],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"in {dbname}: statement_timeout 4321 ms, lock_timeout 321 ms" in done.stdout
    assert _settings(dbname)[(APP_ROLE, dbname)] == [
        "idle_in_transaction_session_timeout=54321ms",
        "lock_timeout=321ms",
        "statement_timeout=4321ms",
    ]

"""Identity behind a real transaction-mode pooler (pgbouncer): nothing carries over.

Two client connections share one server connection (pool size 1). The signed identity a
transaction sets with set_config(..., true) works inside that transaction (its binding is the
server connection's, which the pooler keeps for the whole transaction) and is gone for the
next client; the negative control shows a session-level SET reaching the next client, and
the token it carries granting nothing there.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from neonpro.security import identity
from neonpro.security.context import Identity
from neonpro.security.identity import set_identity
from tests.conftest import APP_ROLE, in_thread

pytestmark = pytest.mark.django_db
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pooler() -> Iterator[str]:
    # pgbouncer refuses to run as root and drops to the postgres user, which cannot enter
    # pytest's private tmp directories: use a world-traversable one of our own.
    tmp_path = Path(tempfile.mkdtemp(prefix="neonpro-pgbouncer-"))
    if not Path(PGBOUNCER).exists():
        pytest.fail("pgbouncer is not installed: `make test` installs it (Debian package pgbouncer)")
    dbname = connection.settings_dict["NAME"]
    port = _free_port()
    tmp_path.chmod(0o777)
    (tmp_path / "users.txt").write_text(f'"{APP_ROLE}" ""\n')
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(
        f"[databases]\nneonpro = host=127.0.0.1 port=5432 dbname={dbname} user={APP_ROLE}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {tmp_path / 'users.txt'}\npool_mode = transaction\n"
        f"default_pool_size = 1\nmax_client_conn = 10\nlogfile = {tmp_path / 'pgbouncer.log'}\n"
        f"pidfile = {tmp_path / 'pgbouncer.pid'}\n"
    )
    for path in tmp_path.iterdir():
        path.chmod(0o666)
    proc = subprocess.Popen([PGBOUNCER, "-u", "postgres", str(ini)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    dsn = f"host=127.0.0.1 port={port} dbname=neonpro user={APP_ROLE}"
    deadline = time.monotonic() + 20
    while True:
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline or proc.poll() is not None:
                log = (tmp_path / "pgbouncer.log").read_text() if (tmp_path / "pgbouncer.log").exists() else ""
                proc.kill()
                pytest.fail(f"pgbouncer did not start: {log[-2000:]}")
            time.sleep(0.2)
    try:
        yield dsn
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture
def committed_patient() -> Iterator[tuple[str, str]]:
    """A patient with a portal account, committed (the pooler cannot see test transactions)."""

    def create() -> tuple[str, str]:
        from neonpro.accounts.models import User
        from patients.services import register_patient

        user = User.objects.create_user(username=f"pooled-{time.time_ns()}", role="patient")
        patient = register_patient(
            full_name="Pooled Probe", date_of_birth=dt.date(1990, 1, 1), mrn="MRN-POOL", user=user
        )
        return str(user.pk), str(patient.pk)

    yield in_thread(create)


def _patient(user_id: str, patient_id: str) -> Identity:
    return Identity(user_id=uuid.UUID(user_id), role="patient", patient_id=uuid.UUID(patient_id))


def test_transaction_local_identity_does_not_reach_the_next_client(pooler, committed_patient) -> None:  # type: ignore[no-untyped-def]
    user_id, patient_id = committed_patient
    with psycopg.connect(pooler, autocommit=True) as first, psycopg.connect(pooler, autocommit=True) as second:
        with first.transaction(), first.cursor() as cursor:
            set_identity(cursor, _patient(user_id, patient_id))
            assert first.execute("SELECT count(*) FROM patients_patient").fetchone()[0] == 1
            first_backend = first.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert second.execute("SELECT pg_backend_pid()").fetchone()[0] == first_backend, "one shared server connection"
        assert second.execute("SELECT count(*) FROM patients_patient").fetchone()[0] == 0
        assert second.execute("SELECT current_setting('neonpro.identity', true)").fetchone()[0] in ("", None)


def test_negative_control_a_session_level_setting_leaks_but_its_token_is_bound_to_its_transaction(
    pooler,  # type: ignore[no-untyped-def]
    committed_patient,
) -> None:
    """Why the app never uses session-level SET: through the pooler the setting reaches strangers.

    The signed token it carries is useless to them: it names the transaction it was signed for.
    """
    user_id, patient_id = committed_patient
    with psycopg.connect(pooler, autocommit=True) as first, psycopg.connect(pooler, autocommit=True) as second:
        with first.transaction(), first.cursor() as cursor:
            token = identity.token(_patient(user_id, patient_id), identity.fetch_binding(cursor))
            cursor.execute("SELECT set_config('neonpro.identity', %s, false)", [token])
            assert cursor.execute("SELECT count(*) FROM patients_patient").fetchone()[0] == 1
        try:
            assert second.execute("SELECT current_setting('neonpro.identity', true)").fetchone()[0] == token
            assert second.execute("SELECT count(*) FROM patients_patient").fetchone()[0] == 0
            with second.transaction():
                assert second.execute("SELECT count(*) FROM patients_patient").fetchone()[0] == 0
        finally:
            second.execute("RESET ALL")

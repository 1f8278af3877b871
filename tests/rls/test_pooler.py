"""Identity behind a real transaction-mode pooler (pgbouncer): nothing carries over.

Two client connections share one server connection (pool size 1). The identity a
transaction sets with set_config(..., true) is gone for the next client; the negative
control shows the test would catch a session-level SET leaking.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection

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


def _identity_sql(local: bool) -> str:
    flag = "true" if local else "false"
    return (
        f"SELECT set_config('neonpro.user_id', %s, {flag}), set_config('neonpro.role', 'patient', {flag}), "
        f"set_config('neonpro.patient_id', %s, {flag})"
    )


def test_transaction_local_identity_does_not_reach_the_next_client(pooler, committed_patient) -> None:  # type: ignore[no-untyped-def]
    user_id, patient_id = committed_patient
    with psycopg.connect(pooler, autocommit=True) as first, psycopg.connect(pooler, autocommit=True) as second:
        with first.transaction():
            first.execute(_identity_sql(local=True), [user_id, patient_id])
            assert first.execute("SELECT count(*) FROM patients_patient").fetchone()[0] == 1
            first_backend = first.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert second.execute("SELECT pg_backend_pid()").fetchone()[0] == first_backend, "one shared server connection"
        assert second.execute("SELECT count(*) FROM patients_patient").fetchone()[0] == 0
        assert second.execute("SELECT current_setting('neonpro.user_id', true)").fetchone()[0] in ("", None)


def test_negative_control_session_level_settings_would_leak(pooler, committed_patient) -> None:  # type: ignore[no-untyped-def]
    """Why the app never uses session-level SET: through the pooler it leaks to strangers."""
    user_id, patient_id = committed_patient
    with psycopg.connect(pooler, autocommit=True) as first, psycopg.connect(pooler, autocommit=True) as second:
        first.execute(_identity_sql(local=False), [user_id, patient_id])
        try:
            assert second.execute("SELECT count(*) FROM patients_patient").fetchone()[0] == 1
        finally:
            second.execute("RESET ALL")

"""Re-encryption for real: a separate process killed with SIGKILL mid-job, and users writing
while it runs. Everything here is committed (threads and subprocesses cannot see a test's
transaction), so the test itself writes nothing and holds no lock they would wait for."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from tests.conftest import APP_ROLE, TEST_MASTER_KEY, in_thread

pytestmark = pytest.mark.django_db
BASE_DIR = Path(__file__).resolve().parents[2]
ROWS = 3000


def _seed(tag: str) -> tuple[list[str], int]:
    """Commit ROWS patients, then rotate the field key; return their ids and the old key id."""
    from keys.keyring import keyring
    from keys.models import DataKey
    from keys.rotation import rotate_data_key
    from neonpro.security.context import system_context
    from patients.models import Patient

    keyring.clear()
    with system_context("test seed"):
        patients = [
            Patient(full_name=f"{tag} {i}", date_of_birth=dt.date(1970, 1, 1), mrn=f"{tag}-{i}", ssn=None)
            for i in range(ROWS)
        ]
        Patient.objects.bulk_create(patients, batch_size=1000)
        old = DataKey.objects.get(purpose="field", status="active").pk
        rotate_data_key("field")
    return [str(p.pk) for p in patients], old


def _check(tag: str, ids: list[str], old_key: int) -> dict[str, int]:
    from keys.keyring import keyring
    from keys.models import DataKey
    from keys.rotation import count_key_usage
    from neonpro.security.context import system_context
    from patients.models import Patient

    keyring.clear()
    with system_context("test check"):
        names = {str(p.pk): p.full_name for p in Patient.objects.filter(pk__in=ids)}
        assert len(names) == len(ids), "no row lost"
        assert all(name.startswith(tag) for name in names.values())
        return count_key_usage(DataKey.objects.get(pk=old_key))


def _env(tmp_path: Path) -> dict[str, str]:
    settings = connection.settings_dict
    host, port = settings["HOST"] or "127.0.0.1", settings["PORT"] or 5432
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        DATABASE_URL=f"postgres://{APP_ROLE}@{host}:{port}/{settings['NAME']}",
        NEONPRO_MASTER_KEY=TEST_MASTER_KEY,
        NEONPRO_DATA_DIR=str(tmp_path),
        NEONPRO_KEY_CACHE_TTL="1",
    )
    return env


def _job(dsn: str) -> tuple[str, int, int] | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT status, rows_done, rows_total FROM keys_reencryptionjob "
            "WHERE model = 'patients.Patient' ORDER BY started_at DESC LIMIT 1"
        ).fetchone()


def test_sigkill_mid_job_then_resume_finishes_with_every_row_readable(tmp_path: Path) -> None:
    tag = f"KILL-{uuid.uuid4().hex[:6]}"
    ids, old_key = in_thread(_seed, tag)
    env = _env(tmp_path)
    settings = connection.settings_dict
    host, port = settings["HOST"] or "127.0.0.1", settings["PORT"] or 5432
    dsn = f"host={host} port={port} user={APP_ROLE} dbname={settings['NAME']}"
    command = [sys.executable, str(BASE_DIR / "manage.py"), "keys", "reencrypt", "--batch", "50"]
    victim = subprocess.Popen(command, env=env, cwd=BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while True:
        job = _job(dsn)
        if job and job[0] == "running" and job[1] >= 500:
            break
        if victim.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the job did not get going: {victim.communicate()[1].decode()[-2000:]}")
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    killed = _job(dsn)
    assert killed is not None and killed[0] == "running" and killed[1] < killed[2], killed

    resumed = subprocess.run(command, env=env, cwd=BASE_DIR, capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "rows/s" in resumed.stderr and "ETA" in resumed.stderr, "progress is shown"
    final = _job(dsn)
    assert final is not None and final[0] == "done"
    assert in_thread(_check, tag, ids, old_key) == {}, "no value left under the old key"


def test_users_keep_writing_while_the_job_runs() -> None:
    tag = f"ONLINE-{uuid.uuid4().hex[:6]}"
    ids, old_key = in_thread(_seed, tag)
    edited = ids[::97]
    errors: list[BaseException] = []

    def job() -> None:
        from keys.reencrypt import reencrypt

        reencrypt("field", batch=25)

    def users() -> None:
        from neonpro.security.context import system_context
        from patients.models import Patient

        for pk in edited:
            with system_context("a clinician edits"):
                patient = Patient.objects.get(pk=pk)
                patient.full_name = f"{tag} edited {pk}"
                patient.save(update_fields=["full_name"])

    def run(fn):  # type: ignore[no-untyped-def]
        def target() -> None:
            try:
                in_thread(fn, timeout=300)
            except BaseException as exc:
                errors.append(exc)

        return threading.Thread(target=target)

    threads = [run(job), run(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors

    def edited_names() -> dict[str, str]:
        from neonpro.security.context import system_context
        from patients.models import Patient

        with system_context("test check"):
            return {str(p.pk): p.full_name for p in Patient.objects.filter(pk__in=edited)}

    assert edited_names() == {pk: f"{tag} edited {pk}" for pk in edited}, "no user write was overwritten"
    leftover = in_thread(_check, tag, ids, old_key)
    if leftover:  # a user's save can write back a value it loaded before the job moved it
        in_thread(lambda: __import__("keys.reencrypt", fromlist=["reencrypt"]).reencrypt("field"))
        assert in_thread(_check, tag, ids, old_key) == {}

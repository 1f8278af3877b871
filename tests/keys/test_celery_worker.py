"""The re-encryption task on a real Celery worker (Redis broker), started by the test."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from tests.conftest import APP_ROLE, TEST_MASTER_KEY, in_thread

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored")]
BASE_DIR = Path(__file__).resolve().parents[2]


def _seed(tag: str) -> int:
    from keys.models import DataKey
    from keys.rotation import rotate_data_key
    from neonpro.security.context import system_context
    from patients.models import Patient

    with system_context("test seed"):
        Patient.objects.bulk_create(
            [Patient(full_name=f"{tag} {i}", date_of_birth=dt.date(1980, 1, 1), mrn=f"{tag}-{i}") for i in range(300)]
        )
        old = DataKey.objects.get(purpose="field", status="active").pk
        rotate_data_key("field")
    return old


def _usage(key_id: int) -> int:
    from keys.models import DataKey
    from keys.rotation import count_key_usage

    return sum(count_key_usage(DataKey.objects.get(pk=key_id)).values())


def test_a_worker_runs_the_reencryption_task(tmp_path: Path) -> None:
    tag = f"WORKER-{uuid.uuid4().hex[:6]}"
    old_key = in_thread(_seed, tag)
    assert in_thread(_usage, old_key) >= 300 * 2
    db = connection.settings_dict
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{APP_ROLE}@{host}:{port}/{db['NAME']}",
        "REDIS_URL": django_settings.REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "False",
        "NEONPRO_MASTER_KEY": TEST_MASTER_KEY,
        "NEONPRO_DATA_DIR": str(tmp_path),
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "neonpro",
            "worker",
            "--pool",
            "solo",
            "-Q",
            queue,
            "--loglevel",
            "INFO",
        ],
        env=env,
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        from neonpro.celery import app

        app.conf.broker_url = django_settings.REDIS_URL
        app.send_task("keys.reencrypt", args=["field", 50], queue=queue)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if in_thread(_usage, old_key) == 0:
                break
            if worker.poll() is not None:
                pytest.fail(worker.stdout.read().decode()[-3000:] if worker.stdout else "worker died")
            time.sleep(0.2)
        else:
            pytest.fail("the worker did not finish the re-encryption in time")
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
    assert in_thread(_usage, old_key) == 0

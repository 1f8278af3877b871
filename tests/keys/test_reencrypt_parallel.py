"""``keys reencrypt --parallel N``: one process per group of models, every core busy, each
job in one process only; ``--models`` runs some models alone. Committed data (the child
processes cannot see a test's transaction), as in test_reencrypt_online.py."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from keys.exceptions import KeysError
from tests.conftest import APP_ROLE, in_thread, superuser_dsn
from tests.keys.test_reencrypt_online import BASE_DIR, _env

pytestmark = pytest.mark.django_db
ROWS = 400


def _seed(tag: str) -> tuple[int, str]:
    """Commit ROWS patients with a record each, then rotate the field key; the old key's id
    and the records' author (to remove them afterwards)."""
    from django.contrib.auth.hashers import make_password

    from keys.keyring import keyring
    from keys.models import DataKey
    from keys.rotation import rotate_data_key
    from neonpro.accounts.models import User
    from neonpro.security.context import system_context
    from patients.models import Patient
    from records.models import MedicalRecord

    keyring.clear()
    with system_context("test seed"):
        doctor = User.objects.create(username=f"dr.{tag}", password=make_password(None), role="clinician")
        patients = [
            Patient(full_name=f"{tag} {i}", date_of_birth=dt.date(1970, 1, 1), mrn=f"{tag}-{i}") for i in range(ROWS)
        ]
        Patient.objects.bulk_create(patients, batch_size=1000)
        MedicalRecord.objects.bulk_create(
            [MedicalRecord(patient=p, provider=doctor, diagnosis=f"{tag} finding") for p in patients], batch_size=1000
        )
        old = DataKey.objects.get(purpose="field", status="active").pk
        rotate_data_key("field")
    return int(old), str(doctor.pk)


def _remove(doctor: str) -> None:
    """The committed records and their patients go again (other tests count records)."""
    with psycopg.connect(superuser_dsn(connection.settings_dict["NAME"]), autocommit=True) as conn:
        patients = [
            row[0]
            for row in conn.execute(
                "SELECT patient_id FROM records_medicalrecord WHERE provider_id = %s", [doctor]
            ).fetchall()
        ]
        conn.execute("DELETE FROM records_medicalrecord WHERE provider_id = %s", [doctor])
        conn.execute("DELETE FROM patients_patient WHERE id = ANY(%s)", [patients])


def _usage(old_key: int) -> dict[str, int]:
    from keys.keyring import keyring
    from keys.models import DataKey
    from keys.rotation import count_key_usage
    from neonpro.security.context import system_context

    keyring.clear()
    with system_context("test check"):
        return count_key_usage(DataKey.objects.get(pk=old_key))


def _latest_jobs() -> dict[str, str]:
    settings = connection.settings_dict
    host, port = settings["HOST"] or "127.0.0.1", settings["PORT"] or 5432
    dsn = f"host={host} port={port} user={APP_ROLE} dbname={settings['NAME']}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (model) model, status FROM keys_reencryptionjob ORDER BY model, started_at DESC"
        ).fetchall()
    return dict(rows)


def test_parallel_processes_share_the_models_and_leave_nothing_under_the_old_key(tmp_path: Path) -> None:
    old_key, doctor = in_thread(_seed, f"PAR-{uuid.uuid4().hex[:6]}")
    command = [sys.executable, str(BASE_DIR / "manage.py"), "keys", "reencrypt", "--parallel", "2", "--batch", "100"]

    try:
        done = subprocess.run(
            command, env=_env(tmp_path), cwd=BASE_DIR, capture_output=True, text=True, timeout=600, check=False
        )
        usage = in_thread(_usage, old_key)
    finally:
        _remove(doctor)

    assert done.returncode == 0, done.stderr[-2000:]
    assert "in process 1 of 2" in done.stdout and "in process 2 of 2" in done.stdout
    assert "patients.Patient: " in done.stdout and "records.MedicalRecord: " in done.stdout
    assert "\r" not in done.stderr and "rows/s" in done.stderr, "progress as whole lines beside each other"
    jobs = _latest_jobs()
    assert jobs["patients.Patient"] == "done" and jobs["records.MedicalRecord"] == "done"
    assert usage == {}, "no value left under the old key"


def test_groups_balance_the_biggest_tables_and_refuse_nonsense() -> None:
    from keys.reencrypt import parallel_groups, reencrypt, select_models

    everything = [model._meta.label for model, _ in select_models("field", None)]
    one = parallel_groups("field", 1)
    two = parallel_groups("field", 2)

    assert len(one) == 1 and sorted(one[0]) == sorted(everything)
    assert len(two) == 2 and all(two) and sorted(two[0] + two[1]) == sorted(everything)
    assert parallel_groups("field", 50, ["patients.patient"]) == [["patients.Patient"]]
    with pytest.raises(KeysError, match="at least 1"):
        parallel_groups("field", 0)
    with pytest.raises(KeysError, match=r"no field values to re-encrypt in nope\.model"):
        reencrypt("field", labels=["nope.Model"])
    with pytest.raises(KeysError, match=r"no index values to re-encrypt in records\.medicalrecord"):
        select_models("index", ["records.MedicalRecord"])  # no searchable field


def test_models_runs_only_those_models() -> None:
    from django.core.management import call_command
    from django.utils import timezone

    from keys.models import ReencryptionJob
    from neonpro.security.context import system_context

    started = timezone.now()
    with system_context("test: one model"):
        call_command("keys", "reencrypt", "--models", "patients.patient", "--batch", "50")

    # New or resumed (an earlier test may have left a job running): only the patients' job moved.
    assert set(ReencryptionJob.objects.filter(updated_at__gte=started).values_list("model", flat=True)) == {
        "patients.Patient"
    }


def test_models_must_name_a_model() -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--models names no model"):
        call_command("keys", "reencrypt", "--models", " , ")

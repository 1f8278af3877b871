"""Long-lived second processes for tests/keys/test_lifecycle.py, driven over stdin/stdout.

``python -m tests.keys.lifecycle_procs writer BLOCK``: an application process that keeps its
key cache between writes and reserves BLOCK encryptions at a time. Each ``write NAME`` line
registers a patient and answers with a JSON line: its id and the data key its name was sealed
under.

``python -m tests.keys.lifecycle_procs reencrypt BATCH``: a re-encryption worker that stops
after its first batch, says ``paused``, and goes on when it reads a line; it ends with a JSON
line describing its jobs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import uuid
from typing import Any


def _setup() -> None:
    sys.path.insert(0, os.getcwd())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neonpro.settings")
    import django

    django.setup()


def _say(message: dict[str, Any] | str) -> None:
    sys.stdout.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
    sys.stdout.flush()


def writer(block: int) -> None:
    from django.conf import settings
    from django.db import connection

    # Small reservation blocks: the process runs out and reserves again, as a busy one does.
    settings.NEONPRO_KEY_COUNT_BLOCK = block

    from neonpro.security.context import system_context
    from patients.models import Patient

    _say("ready")
    for line in sys.stdin:
        name = line.strip().removeprefix("write ")
        with system_context("lifecycle test writer"):
            patient = Patient(full_name=name, date_of_birth=dt.date(1970, 1, 1), mrn=f"LC-{uuid.uuid4().hex[:8]}")
            patient.save()
            with connection.cursor() as cursor:
                cursor.execute("SELECT full_name FROM patients_patient WHERE id = %s", [patient.pk])
                raw = bytes(cursor.fetchone()[0])
        _say({"pk": str(patient.pk), "key": int.from_bytes(raw[1:5], "big")})


def reencrypt_paused(batch: int) -> None:
    from keys.exceptions import KeysError
    from keys.models import ReencryptionJob
    from keys.reencrypt import reencrypt

    paused: list[bool] = []

    def pause(job: ReencryptionJob, rate: float) -> None:
        if not paused and job.model == "patients.Patient":
            paused.append(True)
            _say({"paused": job.pk, "target": job.target_key_id, "rows_done": job.rows_done})
            sys.stdin.readline()

    try:
        jobs = reencrypt("field", batch=batch, progress=pause)
    except KeysError as exc:
        _say({"error": str(exc)})
        sys.exit(1)
    _say({"jobs": [{"model": j.model, "status": j.status, "error": j.error, "target": j.target_key_id} for j in jobs]})


if __name__ == "__main__":
    _setup()
    if sys.argv[1] == "writer":
        writer(int(sys.argv[2]))
    else:
        reencrypt_paused(int(sys.argv[2]))

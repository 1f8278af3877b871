"""No PHI reaches the database in plaintext: not in a raw SELECT, not in a pg_dump."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from django.db import connection

from patients.models import Patient

CANARIES = {
    "full_name": "Zebulon Canarywing",
    "ssn": "987-65-4329",
    "mrn": "MRN-CANARY-42",
    "email": "zebulon.canarywing@example.org",
    "phone": "+1 555 867 5309",
    "address": "42 Canary Lane, Birdtown",
}
NEEDLES = [
    *CANARIES.values(),
    "Zebulon",
    "Canarywing",
    "987654329",
    "5558675309",
    "canarywing",
    "1961-07-04",
]


def _make(patient_factory) -> Patient:  # type: ignore[no-untyped-def]
    import datetime as dt

    return patient_factory(date_of_birth=dt.date(1961, 7, 4), **CANARIES)


@pytest.mark.django_db
@pytest.mark.usefixtures("system")
def test_raw_select_shows_no_plaintext(patient_factory) -> None:  # type: ignore[no-untyped-def]
    patient = _make(patient_factory)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM patients_patient WHERE id = %s", [patient.pk])
        row = cursor.fetchone()
        cursor.execute(
            "SELECT encode(full_name, 'escape') || encode(ssn, 'hex') FROM patients_patient WHERE id = %s", [patient.pk]
        )
        text_forms = " ".join(r[0] for r in cursor.fetchall())
    blob = b" ".join(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for v in row)
    for needle in NEEDLES:
        assert needle.encode() not in blob, needle
        assert needle.encode().lower() not in blob.lower(), needle
        assert needle not in text_forms
    assert Patient.objects.get(pk=patient.pk).full_name == CANARIES["full_name"]


def _in_thread(fn):  # type: ignore[no-untyped-def]
    """Run ``fn`` on its own connection (autocommit), as another process would."""
    import threading

    from django.db import connections

    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except Exception as exc:  # pragma: no cover - re-raised below
            result["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result.get("value")


@pytest.mark.django_db
def test_pg_dump_shows_no_plaintext() -> None:
    import datetime as dt

    from neonpro.security.context import system_context
    from patients.services import register_patient

    def create() -> object:
        return register_patient(date_of_birth=dt.date(1961, 7, 4), **CANARIES).pk

    def remove(pk: object) -> None:
        with system_context("test cleanup"):
            Patient.objects.filter(pk=pk).delete()

    pk = _in_thread(create)
    try:
        settings = connection.settings_dict
        pg_dump = shutil.which("pg_dump") or "/usr/bin/pg_dump"
        dump = subprocess.run(
            [
                pg_dump,
                "--data-only",
                "--table=patients_patient",
                f"--host={settings['HOST'] or '127.0.0.1'}",
                f"--port={settings['PORT'] or 5432}",
                "--username=neonpro_owner",
                "--enable-row-security",
                settings["NAME"],
            ],
            capture_output=True,
            check=False,
            timeout=60,
            env={**os.environ, "PGOPTIONS": "-c neonpro.role=system"},
        )
        assert dump.returncode == 0, dump.stderr.decode()
        out = dump.stdout
        assert b"COPY public.patients_patient" in out
        assert b"\\x01" in out, "bytea columns are dumped as hex envelopes"
        for needle in NEEDLES:
            assert needle.encode().lower() not in out.lower(), needle
            assert needle.encode().hex().encode() not in out, needle  # bytea is dumped as hex
    finally:
        _in_thread(lambda: remove(pk))

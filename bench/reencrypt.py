"""Benchmark: ``keys reencrypt`` after a rotation, as the application role with RLS in force.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/neonpro python bench/reencrypt.py \
        [--patients 100000] [--records 100000] [--batch 500]
    # where the time goes: the re-encryption under cProfile (the profile goes to stderr)
    ... python bench/reencrypt.py --patients 20000 --records 0 --profile

DATABASE_URL names a superuser (trust or password auth); it only creates the database and the
roles (``bench/benchdb.py``). Migrations and housekeeping (VACUUM) run as the owner; seeding
and everything timed run as ``neonpro_app`` (NOSUPERUSER NOBYPASSRLS, owns nothing) with
row-level security in force, inside the system identity the job itself uses: the production
figure. No superuser figure is measured.

Data (deterministic: row ``i``'s id and values are a pure function of ``i``): N patients with
all seven encrypted fields set, four of them searchable (blind index + envelope), and M
medical records (five encrypted fields, sealed rows: ``keys.integrity``) spread over the
patients. Each size has its own throw-away database ``neonpro_bench_reenc_<N>_<M>``, seeded
once through the models' ``bulk_create`` (the real encryption path) and reused while the seed
fingerprint stored in it matches and it holds exactly N patients and M records.

Measurement (a fresh child process per run, so its peak RSS is its own): rotate the ``field``
and ``index`` data keys (every stored value is now under an old key), ``VACUUM (ANALYZE)``
both tables (untimed, as the owner), then time ``reencrypt("field", batch=B)``: the wall time
of the call, which covers every model with encrypted fields. ``rows_per_s = (N + M) / seconds``;
``sql_seconds`` is the part spent executing statements on the default connection, the rest is
Python (decrypting, re-encrypting, re-sealing). Then the run checks that every job is done and
changed every row, retires the previous keys (``count_key_usage`` must find no value left under
them; ``count_seconds`` is how long those counts took) and decrypts a few rows against their
seed. Progress goes to stderr; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import hashlib
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import benchdb

BENCH_DB_PREFIX = "neonpro_bench_reenc"
SEED = 20261203
SEED_VERSION = 2
SEED_CHUNK = 10_000
TARGET_ROWS_PER_S = 5_000
PROVIDER_ID = uuid.UUID(int=0x4E50_0000_0000_4000_8000_0000_0000_0001)
FIRST = ["Ada", "Ben", "Cleo", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivo", "June"]
LAST = ["Lovelace", "Okafor", "Nguyen", "Schmidt", "Silva", "Kowalski", "Haddad", "Tanaka"]
FIELDS = ("full_name", "date_of_birth", "ssn", "mrn", "email", "phone", "address")
RECORD_FIELDS = ("diagnosis", "treatment_plan", "medications", "lab_results", "notes")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _dbname(patients: int, records: int) -> str:
    return f"{BENCH_DB_PREFIX}_{patients}_{records}"


def _fingerprint(patients: int, records: int) -> str:
    master = hashlib.sha256(benchdb.master_key("reencrypt").encode()).hexdigest()[:16]
    return json.dumps(
        {"version": SEED_VERSION, "seed": SEED, "patients": patients, "records": records, "master": master},
        sort_keys=True,
    )


def _digest(kind: str, i: int) -> tuple[uuid.UUID, int]:
    digest = hashlib.blake2b(f"bench/reencrypt.py {SEED} {kind} {i}".encode(), digest_size=32).digest()
    return uuid.UUID(bytes=digest[:16], version=4), int.from_bytes(digest[16:], "big")


def _patient(i: int) -> tuple[uuid.UUID, dict[str, Any]]:
    """Patient ``i``: its primary key (random-looking, like uuid4) and its PHI values."""
    pk, n = _digest("patient", i)
    return pk, {
        "full_name": f"{FIRST[n % 10]} {LAST[(n >> 8) % 8]} {i}",
        "date_of_birth": dt.date(1930, 1, 1) + dt.timedelta(days=(n >> 16) % 30_000),
        "ssn": f"{900 + i // 1_000_000:03d}-{(i // 10_000) % 100:02d}-{i % 10_000:04d}",
        "mrn": f"MRN-{i:08d}",
        "email": f"patient{i}@example.org",
        "phone": f"+1 555 {(n >> 32) % 10**7:07d}",
        "address": f"{(n >> 64) % 9_998 + 1} {LAST[(n >> 80) % 8]} Street, Springfield",
    }


def _record(i: int, patients: int) -> tuple[uuid.UUID, uuid.UUID, dict[str, Any]]:
    """Record ``i``: its primary key, its patient's and its PHI values."""
    pk, n = _digest("record", i)
    return (
        pk,
        _patient(n % patients)[0],
        {
            "record_date": dt.date(2020, 1, 1) + dt.timedelta(days=(n >> 8) % 2_000),
            "diagnosis": ["Hypertension", "Type 2 diabetes", "Asthma", "Migraine"][(n >> 20) % 4],
            "treatment_plan": f"Review in {(n >> 24) % 12 + 1} weeks; lifestyle advice given.",
            "medications": ["metformin 500 mg", "lisinopril 10 mg", "salbutamol inhaler", "none"][(n >> 28) % 4],
            "lab_results": {"hba1c": (n >> 32) % 50 / 10 + 4.5, "ldl": (n >> 40) % 35 / 10 + 1.5},
            "notes": f"Visit note {i}: patient reports {['improvement', 'no change', 'new pain'][(n >> 48) % 3]}.",
        },
    )


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# -- database (child processes) ------------------------------------------------------------


def _setup(patients: int, records: int, *, drop: bool = False) -> None:
    """Create (or reuse) this size's bench database, migrate it as the owner, then switch every
    connection to the application role."""
    benchdb.prepare(_dbname(patients, records), script="bench/reencrypt.py", drop=drop)
    os.environ["NEONPRO_MASTER_KEY"] = benchdb.master_key("reencrypt")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    benchdb.use_app_role()


def _stored_fingerprint(dbname: str) -> str | None:
    """The seed fingerprint in ``dbname`` (as the superuser of DATABASE_URL, before any setup)."""
    import psycopg

    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/neonpro")
    try:
        with psycopg.connect(url.rsplit("/", 1)[0] + f"/{dbname}") as conn:
            row = conn.execute("SELECT fingerprint FROM bench_reencrypt_seed").fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None


def _counts() -> tuple[int, int]:
    from neonpro.security.context import system_context
    from patients.models import Patient
    from records.models import MedicalRecord

    with system_context("bench/reencrypt.py: count rows"):
        return int(Patient._base_manager.count()), int(MedicalRecord._base_manager.count())


def _check_sample(patients: int, records: int) -> None:
    """Decrypt a few rows (first, middle, last) and compare them with their seed values."""
    from neonpro.security.context import system_context
    from patients.models import Patient
    from records.models import MedicalRecord

    with system_context("bench/reencrypt.py: check sample rows"):
        for i in sorted({0, patients // 2, patients - 1}):
            pk, values = _patient(i)
            patient = Patient._base_manager.get(pk=pk)
            for name in FIELDS:
                got = getattr(patient, name)
                assert got == values[name], f"patient {i} {name}: {got!r} != {values[name]!r}"
            assert Patient._base_manager.filter(ssn=values["ssn"]).count() == 1, f"patient {i}: SSN lookup failed"
        for i in sorted({0, records // 2, records - 1}) if records else []:
            pk, _, values = _record(i, patients)
            record = MedicalRecord._base_manager.get(pk=pk)
            for name in RECORD_FIELDS:
                got = getattr(record, name)
                assert got == values[name], f"record {i} {name}: {got!r} != {values[name]!r}"


def _vacuum() -> None:
    with benchdb.owner() as conn:
        conn.execute("VACUUM (ANALYZE) patients_patient")
        conn.execute("VACUUM (ANALYZE) records_medicalrecord")


def _seed_phase(patients: int, records: int) -> dict[str, Any]:
    dbname = _dbname(patients, records)
    seeded = _stored_fingerprint(dbname) == _fingerprint(patients, records)
    _setup(patients, records, drop=not seeded)
    if seeded:
        try:
            counts = _counts()
            _check_sample(patients, records)
        except Exception as exc:  # anything wrong with the data means: reseed
            counts = (-1, -1)
            _log(f"  sample check failed ({type(exc).__name__}: {exc})")
        if counts == (patients, records):
            _log(f"{dbname}: already seeded, reusing it")
            return {"patients": patients, "records": records, "seeded": False}
        sys.exit(f"{dbname} does not hold its seed: drop it (DROP DATABASE {dbname}) and run again")
    _log(f"seeding {dbname}: {patients:,} patients, {records:,} records (as {benchdb.APP_ROLE})")
    started = time.perf_counter()
    _seed(patients, records)
    seconds = time.perf_counter() - started
    _vacuum()
    with benchdb.owner() as conn:
        conn.execute("CREATE TABLE bench_reencrypt_seed (fingerprint text NOT NULL)")
        conn.execute("INSERT INTO bench_reencrypt_seed VALUES (%s)", [_fingerprint(patients, records)])
    assert _counts() == (patients, records)
    _check_sample(patients, records)
    _log(f"  seeded in {seconds:.1f} s")
    return {"patients": patients, "records": records, "seeded": True, "seed_seconds": round(seconds, 1)}


def _seed(patients: int, records: int) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from keys.keyring import keyring
    from neonpro.security.context import system_context
    from patients.models import Patient
    from records.models import MedicalRecord

    user_model = get_user_model()
    keyring.clear()
    started = time.perf_counter()
    with system_context("bench/reencrypt.py seeding"):
        user_model.objects.bulk_create(
            [
                user_model(
                    id=PROVIDER_ID, username="bench-reencrypt-provider", password=make_password(None), role="clinician"
                )
            ]
        )
    for offset in range(0, patients, SEED_CHUNK):
        rows = [
            Patient(id=pk, **values) for pk, values in map(_patient, range(offset, min(offset + SEED_CHUNK, patients)))
        ]
        with system_context("bench/reencrypt.py seeding"):
            Patient.objects.bulk_create(rows, batch_size=2000)
        done = offset + len(rows)
        if done % 100_000 == 0 or done == patients:
            _log(f"  {done:,} patients ({time.perf_counter() - started:.1f} s)")
    for offset in range(0, records, SEED_CHUNK):
        batch = []
        for i in range(offset, min(offset + SEED_CHUNK, records)):
            pk, patient, values = _record(i, patients)
            batch.append(MedicalRecord(id=pk, patient_id=patient, provider_id=PROVIDER_ID, **values))
        with system_context("bench/reencrypt.py seeding"):
            MedicalRecord.objects.bulk_create(batch, batch_size=2000)
        done = offset + len(batch)
        if done % 100_000 == 0 or done == records:
            _log(f"  {done:,} records ({time.perf_counter() - started:.1f} s)")


def _measure_phase(patients: int, records: int, batch: int, profile: bool) -> dict[str, Any]:
    if _stored_fingerprint(_dbname(patients, records)) != _fingerprint(patients, records):
        sys.exit(f"{_dbname(patients, records)} is not seeded: run bench/reencrypt.py without --phase")
    _setup(patients, records)
    from django.db import connection

    from keys.models import DataKey, ReencryptionJob
    from keys.reencrypt import reencrypt
    from keys.rotation import retire_data_key, rotate_data_key, settled_at
    from neonpro.security.context import system_context

    assert _counts() == (patients, records)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone() == (benchdb.APP_ROLE, False, False)
    purposes = (DataKey.Purpose.FIELD, DataKey.Purpose.INDEX)
    with system_context("bench/reencrypt.py: rotate"):
        for purpose in purposes:
            rotate_data_key(purpose)  # every stored value is now under an old key
    _vacuum()
    gc.collect()
    rss_before = _rss_mb()
    total = patients + records
    step = max(total // 10, batch)

    def progress(job: ReencryptionJob, rate: float) -> None:
        if job.rows_done % step < batch or job.rows_done == job.rows_total:
            _log(f"    {job.model}: {job.rows_done:,}/{job.rows_total:,} rows, {rate:,.0f} rows/s")

    _log(f"  re-encrypting {patients:,} patients + {records:,} records, batch {batch}, as {benchdb.APP_ROLE}")
    sql_seconds = 0.0

    def timed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal sql_seconds
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            sql_seconds += time.perf_counter() - began

    profiler = cProfile.Profile() if profile else None
    with connection.execute_wrapper(timed):
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        jobs = reencrypt("field", batch=batch, progress=progress)
        if profiler is not None:
            profiler.disable()
        seconds = time.perf_counter() - start
    peak = _rss_mb()
    assert all(j.status == ReencryptionJob.Status.DONE for j in jobs), [(j.model, j.status, j.error) for j in jobs]
    by_model = {j.model: j.rows_changed for j in jobs}
    assert by_model.get("patients.Patient", 0) == patients, by_model
    assert by_model.get("records.MedicalRecord", 0) == records, by_model
    count_started = time.perf_counter()
    with system_context("bench/reencrypt.py: retire"):
        for old in DataKey.objects.filter(purpose__in=purposes, status=DataKey.Status.DECRYPT_ONLY):
            # Clock past the quiet period (no other process writes here); it still counts every value.
            retire_data_key(old, now=settled_at(old))  # refuses if any stored value still uses the old key
    count_seconds = time.perf_counter() - count_started
    _check_sample(patients, records)
    if profiler is not None:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs()
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(40)
        _log(out.getvalue())
    _log(
        f"  {total:,} rows in {seconds:.2f} s ({sql_seconds:.2f} s in SQL): {total / seconds:,.0f} rows/s, "
        f"peak RSS {peak:.1f} MB; retiring the old keys (usage counts) {count_seconds:.2f} s"
    )
    return {
        "patients": patients,
        "records": records,
        "rows": total,
        "batch": batch,
        "seconds": round(seconds, 2),
        "rows_per_s": round(total / seconds, 1),
        "sql_seconds": round(sql_seconds, 2),
        "count_seconds": round(count_seconds, 3),
        "peak_rss_mb": round(peak, 1),
        "rss_before_mb": round(rss_before, 1),
        "role": benchdb.APP_ROLE,
        "profiled": profile,
    }


# -- orchestration (parent process: no Django) ---------------------------------------------


def _child(*args: str) -> dict[str, Any]:
    """Run this script in a fresh interpreter; its stderr passes through, its last stdout line is JSON."""
    done = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [sys.executable, str(Path(__file__).resolve()), *args], stdout=subprocess.PIPE, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"bench/reencrypt.py {' '.join(args)} failed with exit code {done.returncode}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100_000, help="patients (7 encrypted fields each)")
    parser.add_argument("--records", type=int, default=100_000, help="medical records (5 encrypted fields, sealed)")
    parser.add_argument("--batch", type=int, default=500, help="rows per batch (transaction)")
    parser.add_argument("--profile", action="store_true", help="run the re-encryption under cProfile (stderr)")
    parser.add_argument("--phase", choices=("seed", "measure"), help=argparse.SUPPRESS)  # child processes
    args = parser.parse_args()
    if args.patients < 1 or args.records < 0 or args.batch < 1:
        parser.error("--patients and --batch must be positive, --records not negative")
    sizes = [str(args.patients), str(args.records)]
    if args.phase == "seed":
        result = _seed_phase(args.patients, args.records)
    elif args.phase == "measure":
        result = _measure_phase(args.patients, args.records, args.batch, args.profile)
    else:
        started = time.perf_counter()
        seeded = _child("--phase", "seed", "--patients", sizes[0], "--records", sizes[1])
        extra = ["--profile"] if args.profile else []
        result = _child(
            "--phase", "measure", "--patients", sizes[0], "--records", sizes[1], "--batch", str(args.batch), *extra
        )
        result["seed_seconds"] = seeded.get("seed_seconds")
        result["target_rows_per_s"] = TARGET_ROWS_PER_S
        result["load_average"] = [round(x, 2) for x in os.getloadavg()]
        result["total_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Benchmark: what a clinician's lists, search, key rotation and storage cost as the tables grow.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/neonpro python bench/scale.py \
        --patients 100000 --records 100000 [--samples 40] [--no-reencrypt]

Run it at two sizes (100k and 1M) and compare: issue 16's targets are list and timeline p50
at 1M within 1.3x of their values at 100k, re-encryption >= 5,000 rows/s at 1M and within
1.3x of its rate at 100k, and bytes per patient <= 1.8x the plaintext twin.

``DATABASE_URL`` names a superuser only to create the throw-away database
``neonpro_bench_scale_<patients>_<records>`` and the roles; the schema is migrated by
``neonpro_owner`` and **everything seeded and timed runs as the application role
``neonpro_app`` with row-level security in force**, through the application's own paths:
``bulk_create`` of the encrypted, sealed models inside ``system_context`` to seed (the
same per-value envelopes and row seals ``save()`` writes), then the services a request
calls (``patients.services.list_patients``, ``search_patients``,
``records.services.list_records``) inside ``acting_as(<clinician>)``, audit events and all,
and ``keys.reencrypt`` after ``rotate_data_key`` for re-encryption.

Data (deterministic from the seed; reused while the fingerprint stored in the database
matches): N patients and M records. Clinician 0 has a care team of 10 patients and one
active break-glass grant; clinician 1 has a care team of 1,000; every other patient is on
the team of one of the remaining clinicians (about 100 patients each). Patient 0 (on both
benched teams) has 1,000 records; the other records fall on random patients. A plaintext
twin of each table (``bench_plain_patient``, ``bench_plain_record``: the same columns as
plaintext types, the same indexes — for the searchable fields an index on the plaintext
value) holds the same values, so the storage ratio compares encryption with nothing.

Figures: ``*_p50_ms`` are medians of ``--samples`` calls, each a whole service call (the
first page, as a client gets it); ``reencrypt_rows_per_s`` is the rows changed by
``reencrypt("field")`` after a rotation of the ``field`` key, divided by its wall time, and
``reencrypt_parallel_rows_per_s`` the same for ``manage.py keys reencrypt --parallel
<--workers>`` (default: the cores) after another rotation, as an operator runs it;
``bytes_per_*`` are ``pg_total_relation_size`` (heap, TOAST and indexes) per row after
``VACUUM (ANALYZE)``, measured before the re-encryption (whose rewritten rows leave free
space behind in the files). They mean what they say only on a database seeded by the code
being measured: a database migrated from an older layout carries the old rows' space too
(``--reseed`` starts over). Progress goes to stderr; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import benchdb

SEED = 20261203
SEED_VERSION = 1
CHUNK = 5_000
TEAM_SMALL = 10
TEAM_LARGE = 1_000
TIMELINE = 1_000
PER_CLINICIAN = 100
FIRST = ["Ada", "Ben", "Cleo", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivo", "June"]
LAST = ["Lovelace", "Okafor", "Nguyen", "Schmidt", "Silva", "Kowalski", "Haddad", "Tanaka"]
DIAGNOSES = ["Hypertension", "Type 2 diabetes", "Asthma", "Migraine", "Osteoarthritis", "Anaemia"]
DRUGS = ["metformin 500 mg", "lisinopril 10 mg", "salbutamol inhaler", "ibuprofen 400 mg", "none"]

PATIENT_FIELDS = ("full_name", "date_of_birth", "ssn", "mrn", "email", "phone", "address")
RECORD_FIELDS = ("record_date", "diagnosis", "treatment_plan", "medications", "lab_results", "notes")
PLAIN_DDL = [
    """CREATE TABLE bench_plain_patient (
        id uuid PRIMARY KEY, user_id integer NULL, full_name varchar(200) NOT NULL,
        date_of_birth date NOT NULL, ssn varchar(11) NULL, mrn varchar(32) NOT NULL,
        email varchar(254) NULL, phone varchar(32) NULL, address text NULL,
        contact_by_email boolean NOT NULL, contact_by_sms boolean NOT NULL,
        created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, active boolean NOT NULL)""",
    """CREATE TABLE bench_plain_record (
        id uuid PRIMARY KEY, patient_id uuid NOT NULL, provider_id uuid NOT NULL, record_date date NOT NULL,
        diagnosis text NOT NULL, treatment_plan text NOT NULL, medications text NOT NULL, lab_results jsonb NULL,
        notes text NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)""",
]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _patient_values(i: int, rng: random.Random) -> dict[str, Any]:
    return {
        "full_name": f"{rng.choice(FIRST)} {rng.choice(LAST)} {i}",
        "date_of_birth": dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(30000)),
        "ssn": f"{100 + i // 1_000_000:03d}-{(i // 10_000) % 100:02d}-{i % 10_000:04d}",
        "mrn": f"MRN-{i:09d}",
        "email": f"patient{i}@example.org",
        "phone": f"+1 555 {i % 10**7:07d}",
        "address": f"{rng.randrange(1, 9999)} {rng.choice(LAST)} Street, Springfield",
    }


def _record_values(n: int, rng: random.Random) -> dict[str, Any]:
    return {
        "record_date": dt.date(2016, 1, 1) + dt.timedelta(days=rng.randrange(3650)),
        "diagnosis": rng.choice(DIAGNOSES),
        "treatment_plan": f"Review in {rng.randrange(1, 13)} weeks; lifestyle advice given.",
        "medications": rng.choice(DRUGS),
        "lab_results": {"hba1c": round(rng.uniform(4.5, 9.5), 1), "ldl": round(rng.uniform(1.5, 5.0), 1)},
        "notes": f"Visit note {n}: patient reports {rng.choice(['improvement', 'no change', 'new pain'])}.",
    }


class Plan:
    """Who is on which team; ids are a pure function of the seed and the sizes."""

    def __init__(self, patients: int, records: int) -> None:
        rng = random.Random(f"{SEED}:{patients}:{records}")
        self.patients = patients
        self.records = records
        self.team_large = min(TEAM_LARGE, max(patients - 1, 1))
        self.timeline = min(TIMELINE, records)
        others = max(1, (patients - self.team_large) // PER_CLINICIAN)
        self.clinician_ids = [_uuid(rng) for _ in range(2 + others)]
        self.patient_ids = [_uuid(rng) for _ in range(patients)]

    def team_of(self, i: int) -> list[int]:
        """Clinician indexes on patient ``i``'s active care team."""
        team = []
        if i < TEAM_SMALL:
            team.append(0)
        if i < self.team_large:
            team.append(1)
        if i >= self.team_large or not team:
            team.append(2 + (i % (len(self.clinician_ids) - 2)))
        return team


def _fingerprint(plan: Plan) -> str:
    return json.dumps({"v": SEED_VERSION, "seed": SEED, "patients": plan.patients, "records": plan.records})


def _seeded(plan: Plan, dbname: str, url: str) -> bool:
    """Whether ``dbname`` holds this plan's complete seed (read as the superuser, before Django)."""
    import psycopg

    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone():
            return False
    with psycopg.connect(url.rsplit("/", 1)[0] + f"/{dbname}", autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass('bench_scale_seed') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return False
        stored = conn.execute("SELECT fingerprint FROM bench_scale_seed").fetchone()
    return bool(stored) and stored[0] == _fingerprint(plan)


def _seed(plan: Plan) -> float:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import transaction
    from psycopg.types.json import Jsonb

    from neonpro.security.context import system_context
    from patients.models import CareTeamMembership, EmergencyAccessGrant, Patient
    from records.models import MedicalRecord

    user_model = get_user_model()
    rng = random.Random(f"{SEED}:values")
    started = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    with benchdb.owner() as conn:
        for ddl in PLAIN_DDL:
            conn.execute(ddl)
    with system_context("bench/scale.py seeding"):
        user_model.objects.bulk_create(
            [
                user_model(id=cid, username=f"clinician{k:05d}", password=make_password(None), role="clinician")
                for k, cid in enumerate(plan.clinician_ids)
            ],
            batch_size=2000,
        )
        for offset in range(0, plan.patients, CHUNK):
            stop = min(offset + CHUNK, plan.patients)
            rows = [(i, _patient_values(i, rng)) for i in range(offset, stop)]
            with transaction.atomic():
                Patient.objects.bulk_create([Patient(id=plan.patient_ids[i], **v) for i, v in rows], batch_size=1000)
                CareTeamMembership.objects.bulk_create(
                    [
                        CareTeamMembership(
                            id=_uuid(rng), patient_id=plan.patient_ids[i], clinician_id=plan.clinician_ids[c]
                        )
                        for i, _ in rows
                        for c in plan.team_of(i)
                    ],
                    batch_size=2000,
                )
            with benchdb.owner() as conn, conn.cursor().copy("COPY bench_plain_patient FROM STDIN") as copy:
                for i, v in rows:
                    copy.write_row(
                        (plan.patient_ids[i], None, *(v[f] for f in PATIENT_FIELDS), False, False, now, now, True)
                    )
            if stop % 100_000 == 0 or stop == plan.patients:
                _log(f"  patients: {stop:,} ({time.perf_counter() - started:.0f} s)")
        if plan.patients > TEAM_SMALL:  # the small team's clinician also holds one active grant
            EmergencyAccessGrant.objects.create(
                patient_id=plan.patient_ids[plan.patients - 1],
                clinician_id=plan.clinician_ids[0],
                reason="Unconscious patient in the emergency department, no care team reachable.",
                expires_at=now + dt.timedelta(days=3650),
            )
        for offset in range(0, plan.records, CHUNK):
            stop = min(offset + CHUNK, plan.records)
            batch: list[tuple[uuid.UUID, int, int, dict[str, Any]]] = []
            for n in range(offset, stop):
                p = 0 if n < plan.timeline else rng.randrange(plan.patients)
                batch.append((_uuid(rng), p, rng.choice(plan.team_of(p)), _record_values(n, rng)))
            MedicalRecord.objects.bulk_create(
                [
                    MedicalRecord(id=rid, patient_id=plan.patient_ids[p], provider_id=plan.clinician_ids[c], **values)
                    for rid, p, c, values in batch
                ],
                batch_size=1000,
            )
            with benchdb.owner() as conn, conn.cursor().copy("COPY bench_plain_record FROM STDIN") as copy:
                for rid, p, c, v in batch:
                    v = {**v, "lab_results": Jsonb(v["lab_results"])}
                    copy.write_row(
                        (rid, plan.patient_ids[p], plan.clinician_ids[c], *(v[f] for f in RECORD_FIELDS), now, now)
                    )
            if stop % 100_000 == 0 or stop == plan.records:
                _log(f"  records: {stop:,} ({time.perf_counter() - started:.0f} s)")
    seconds = time.perf_counter() - started
    with benchdb.owner() as conn:
        # The twins get the encrypted tables' index shapes, on plaintext.
        for column in ("ssn", "mrn", "email", "phone"):
            conn.execute(f"CREATE INDEX ON bench_plain_patient ({column})")
        conn.execute("CREATE INDEX ON bench_plain_patient (created_at DESC, id DESC)")
        conn.execute("CREATE INDEX ON bench_plain_patient (user_id)")
        conn.execute("CREATE INDEX ON bench_plain_record (patient_id, record_date DESC, id DESC)")
        conn.execute("CREATE INDEX ON bench_plain_record (provider_id)")
        conn.execute("CREATE TABLE bench_scale_seed (fingerprint text NOT NULL)")
        conn.execute("INSERT INTO bench_scale_seed VALUES (%s)", [_fingerprint(plan)])
        conn.execute("VACUUM (ANALYZE)")
    return seconds


def _p50(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def _timed(samples: int, call: Any) -> tuple[float, int]:
    """p50 in ms of ``call()`` and how many items its last call returned."""
    times, count = [], 0
    call()  # warm the keyring's caches and the connection
    for _ in range(samples):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
        count = len(result)
    return _p50(times), count


def _page(result: Any) -> Any:
    """The items of a service's list result, whether a list or a page object."""
    return getattr(result, "items", result)


def _measure_lists(plan: Plan, samples: int) -> dict[str, Any]:
    from neonpro.security.context import Identity, acting_as
    from patients import services as patients
    from records import services as records

    small = Identity(user_id=plan.clinician_ids[0], role="clinician")
    large = Identity(user_id=plan.clinician_ids[1], role="clinician")
    rng = random.Random(SEED)
    figures: dict[str, Any] = {}
    for name, identity in (("team10", small), ("team1000", large)):
        with acting_as(identity):
            p50, count = _timed(samples, lambda identity=identity: _page(patients.list_patients(identity)))
        figures[f"list_p50_ms_{name}"] = p50
        figures[f"list_rows_{name}"] = count
        _log(f"  list ({name}): p50 {p50} ms, {count} rows on the first page")
    with acting_as(small):
        p50, count = _timed(samples, lambda: _page(records.list_records(small, plan.patient_ids[0])))
    figures["timeline_p50_ms"], figures["timeline_rows"] = p50, count
    _log(f"  timeline of a patient with {plan.timeline:,} records: p50 {p50} ms, {count} rows")
    team = range(plan.team_large)
    ssns = [_ssn(rng.choice(team)) for _ in range(samples + 1)]
    with acting_as(large):
        p50, count = _timed(samples, lambda: patients.search_patients(large, field="ssn", value=ssns.pop()))
    assert count == 1, f"SSN search found {count} patients"
    figures["search_p50_ms"] = p50
    _log(f"  search by SSN: p50 {p50} ms")
    return figures


def _ssn(i: int) -> str:
    return f"{100 + i // 1_000_000:03d}{(i // 10_000) % 100:02d}{i % 10_000:04d}"  # unformatted, as typed


def _measure_reencrypt() -> dict[str, Any]:
    from keys.reencrypt import reencrypt
    from keys.rotation import rotate_data_key

    rotate_data_key("field")
    started = time.perf_counter()
    jobs = reencrypt("field")
    seconds = time.perf_counter() - started
    changed = sum(job.rows_changed for job in jobs)
    rate = round(changed / seconds, 1) if seconds else 0.0
    _log(f"  re-encryption: {changed:,} rows in {seconds:.1f} s ({rate:,.0f} rows/s)")
    return {"reencrypt_rows": changed, "reencrypt_seconds": round(seconds, 2), "reencrypt_rows_per_s": rate}


def _measure_parallel_reencrypt(workers: int) -> dict[str, Any]:
    """``manage.py keys reencrypt --parallel N`` as an operator runs it, as neonpro_app."""
    import subprocess

    from django.db import connection

    from keys.models import ReencryptionJob
    from keys.rotation import rotate_data_key

    rotate_data_key("field")
    before = set(ReencryptionJob.objects.values_list("pk", flat=True))
    server = benchdb.SERVER
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{benchdb.APP_ROLE}@{server['host']}:{server['port']}/{server['dbname']}",
    }
    command = [sys.executable, str(ROOT / "manage.py"), "keys", "reencrypt", "--parallel", str(workers)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"keys reencrypt --parallel {workers} failed:\n{done.stderr[-3000:]}")
    connection.close()
    changed = sum(job.rows_changed for job in ReencryptionJob.objects.exclude(pk__in=before))
    rate = round(changed / seconds, 1) if seconds else 0.0
    _log(f"  re-encryption, {workers} processes: {changed:,} rows in {seconds:.1f} s ({rate:,.0f} rows/s)")
    return {"reencrypt_parallel_workers": workers, "reencrypt_parallel_rows_per_s": rate}


def _storage(plan: Plan) -> dict[str, Any]:
    with benchdb.owner() as conn:
        conn.execute("VACUUM (ANALYZE)")
        size = {
            table: conn.execute("SELECT pg_total_relation_size(%s)", [table]).fetchone()[0]  # type: ignore[index]
            for table in ("patients_patient", "bench_plain_patient", "records_medicalrecord", "bench_plain_record")
        }
    figures = {
        "bytes_per_patient": round(size["patients_patient"] / plan.patients),
        "plain_bytes_per_patient": round(size["bench_plain_patient"] / plan.patients),
        "bytes_per_record": round(size["records_medicalrecord"] / max(plan.records, 1)),
        "plain_bytes_per_record": round(size["bench_plain_record"] / max(plan.records, 1)),
    }
    figures["patient_bytes_ratio"] = round(figures["bytes_per_patient"] / figures["plain_bytes_per_patient"], 2)
    figures["record_bytes_ratio"] = round(figures["bytes_per_record"] / max(figures["plain_bytes_per_record"], 1), 2)
    _log(f"  storage: {figures}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--no-reencrypt", action="store_true", help="skip the re-encryption measurement")
    parser.add_argument("--reseed", action="store_true", help="drop and reseed the bench database")
    parser.add_argument("--parallel-only", action="store_true", help="measure only `keys reencrypt --parallel`")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes of `keys reencrypt --parallel` (cores)"
    )
    args = parser.parse_args()
    if args.patients < 2 or args.records < 1:
        parser.error("--patients must be at least 2 and --records at least 1")
    plan = Plan(args.patients, args.records)
    dbname = f"neonpro_bench_scale_{args.patients}_{args.records}"
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/neonpro")
    if not url.startswith("postgres"):
        sys.exit("bench/scale.py runs on PostgreSQL: set DATABASE_URL=postgres://... (a superuser)")
    seeded = not args.reseed and _seeded(plan, dbname, url)
    benchdb.prepare(dbname, script="bench/scale.py", drop=not seeded)  # a partial or older seed starts over
    os.environ["NEONPRO_MASTER_KEY"] = benchdb.master_key("bench/scale.py")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    benchdb.use_app_role()
    figures: dict[str, Any] = {"patients": plan.patients, "records": plan.records, "role": benchdb.APP_ROLE}
    if seeded:
        _log(f"{dbname}: already seeded, reusing it")
    else:
        _log(f"seeding {dbname} as {benchdb.APP_ROLE}: {plan.patients:,} patients, {plan.records:,} records")
        figures["seed_seconds"] = round(_seed(plan), 1)
    figures.update(_measure_lists(plan, args.samples))
    # Storage before re-encryption: rewriting every row leaves the old versions' space in the
    # files (reusable, not returned), which would be counted as if encryption cost it.
    figures.update(_storage(plan))
    if not args.no_reencrypt:
        if not args.parallel_only:
            figures.update(_measure_reencrypt())
        figures.update(_measure_parallel_reencrypt(args.workers))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

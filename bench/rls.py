"""Benchmark: a clinician's records query with PostgreSQL row-level security on vs bypassed.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/neonpro python bench/rls.py [--pairs 5] [--iterations 200]

DATABASE_URL names a superuser (trust or password auth); the roles ``neonpro_owner`` and
``neonpro_app`` must be able to log in from this host without a password, as for the tests.

Data (deterministic; seeded once into the throw-away database ``neonpro_bench_rls`` and reused
while the seed fingerprint stored in it matches, otherwise the database is recreated):
5,000 patients, 100,000 medical records (each on a random patient, so ~20 per patient) and
250 clinicians. Every patient has two active care-team members, so every clinician has
exactly 40 active patients; there are also 1,500 ended and 250 not-yet-started memberships
and 300 emergency-access grants (20 active, none for the benched clinician), so the tables
the policies look into are not trivially small. Tables are migrated by ``neonpro_owner``,
seeded through the ORM inside ``system_context`` and ``VACUUM (ANALYZE)``-ed.

The query (``rls_ratio``): the clinician's records list — all records of the 40 patients on
their care team (798 rows), newest first:
``MedicalRecord.objects.filter(patient_id__in=<care-team patient ids>).order_by("-record_date",
"-created_at")`` compiled inside ``acting_as(clinician)``, so it carries the scoped manager's
own care-team/grant filter too, exactly as the app would send it. Two more queries are
reported for context: ``all_*`` is the same list without the explicit ids
(``MedicalRecord.objects.order_by(...)``: the scoped manager's filter alone), ``patient_*``
is one patient's records (the shape of ``records.services.list_records``, 23 rows).

Each query's SQL is compiled once and run through psycopg — server-side parameters, no
prepared statements, text results, as Django runs it — with the SAME text and parameters on
two connections that differ only in their role:

* ``neonpro_app`` (the runtime role: NOSUPERUSER NOBYPASSRLS; the tables FORCE row-level
  security) with the clinician's signed identity set as the app sets it
  (``neonpro.security.identity.set_identity``: the transaction's binding, then
  ``set_config('neonpro.identity', <token>, true)``) — RLS on, every policy verifying the token;
* ``neonpro_bench_bypass`` (NOSUPERUSER BYPASSRLS, SELECT only; created for the run and
  dropped at its end) — RLS off. It sets the same way (and ignores it), so both
  transactions have the same shape.

Each measurement is one transaction: the identity (untimed), then the query, executed and
all rows fetched (timed). A pair runs ``--iterations`` rounds of one query per side,
alternating the sides inside the round and which side leads from one pair to the next; the
pair's ratio is p50(RLS) / p50(bypass), each reported ratio is the median over pairs and
each ``*_ms_p50`` the median of the pairs' p50s. ``EXPLAIN (ANALYZE, BUFFERS)`` of every
query on both sides goes to stderr with the progress. The last line printed is one JSON
object.

"My patients" at hospital scale (``--list-patients N``, e.g. 100000 or 1000000; the data
set then lives in ``<database>_l<N>``, and ``--lists-only`` skips the comparison above): N
more patients, written in bulk by the superuser (plain SQL with ciphertext-sized placeholder
values that are never decrypted, ``session_replication_role = replica`` so a million rows
take a minute, then ``VACUUM (ANALYZE)``), on care teams of 10 (clinician ``list-10``), of
1,000 (``list-1000``) and of about 5,000 for 200 other clinicians, plus ended memberships
and expired grants. Measured as ``neonpro_app`` with the clinician's signed identity, RLS in
force: the first keyset page (50, ``ORDER BY created_at DESC, id DESC``) as the scoped
manager sends it (``my_patients_team10_ms_p50``, ``my_patients_team1000_ms_p50``), and the
page after a cursor (``*_next_page_ms_p50``); ``--iterations`` runs each, p50 reported, the
plans on stderr.

``--database NAME`` names the bench database (default ``neonpro_bench_rls``).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _early(option: str, default: str) -> str:
    """An option's value before argparse runs (the database must be known before Django starts)."""
    argv = sys.argv[1:]
    return argv[argv.index(option) + 1] if option in argv[:-1] else default


BENCH_DB = _early("--database", "neonpro_bench_rls")
# --smoke: the same measurement on a tiny data set of its own (make bench-smoke, in CI),
# to prove the benchmark runs; its figures mean nothing.
SMOKE = "--smoke" in sys.argv
if SMOKE:
    BENCH_DB += "_smoke"
LIST_PATIENTS = int(_early("--list-patients", "0"))
LISTS_ONLY = "--lists-only" in sys.argv  # and only their data set
if LIST_PATIENTS:
    BENCH_DB += f"_l{LIST_PATIENTS}" + ("_only" if LISTS_ONLY else "")
OWNER_ROLE = "neonpro_owner"
APP_ROLE = "neonpro_app"
BYPASS_ROLE = "neonpro_bench_bypass"

SEED = 20261128
SEED_VERSION = 1
PATIENTS = 200 if SMOKE else 5_000
RECORDS = 2_000 if SMOKE else 100_000
CLINICIANS = 10 if SMOKE else 250
TEAM_PER_PATIENT = 2  # active care-team members per patient: each clinician gets 40 patients
ENDED_MEMBERSHIPS = 50 if SMOKE else 1_500
FUTURE_MEMBERSHIPS = 10 if SMOKE else 250
GRANTS = 20 if SMOKE else 300
ACTIVE_GRANTS = 5 if SMOKE else 20
FINGERPRINT = json.dumps(
    {
        "version": SEED_VERSION,
        "seed": SEED,
        "patients": PATIENTS,
        "records": RECORDS,
        "clinicians": CLINICIANS,
        "team": TEAM_PER_PATIENT,
        "ended": ENDED_MEMBERSHIPS,
        "future": FUTURE_MEMBERSHIPS,
        "grants": [GRANTS, ACTIVE_GRANTS],
        "list_patients": [LIST_PATIENTS, LISTS_ONLY, 2],
    },
    sort_keys=True,
)
# The bench database is disposable and its data synthetic: a fixed master key lets a rerun
# decrypt what an earlier run seeded.
BENCH_MASTER_KEY = base64.b64encode(hashlib.sha256(b"neonpro bench/rls.py master key").digest()).decode()

SERVER: dict[str, Any] = {}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _conninfo(user: str, dbname: str) -> dict[str, Any]:
    info = {"host": SERVER["host"], "port": SERVER["port"], "user": user, "dbname": dbname}
    if user == SERVER["user"] and SERVER["password"]:
        info["password"] = SERVER["password"]
    return info


def _prepare_environment() -> None:
    """Create the bench database (or drop a stale one), the roles, and point Django at it as the owner."""
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/neonpro")
    if not url.startswith("postgres"):
        sys.exit("bench/rls.py runs on PostgreSQL: set DATABASE_URL=postgres://...")
    parts = urlsplit(url)
    SERVER.update(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
    )
    from neonpro.security.db import create_roles

    with psycopg.connect(**_conninfo(SERVER["user"], "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone()
        if exists and _stored_fingerprint() != FINGERPRINT:
            _log(f"{BENCH_DB}: data missing or from another seed; recreating the database")
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(BENCH_DB)))
            exists = None
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    with psycopg.connect(**_conninfo(SERVER["user"], BENCH_DB), autocommit=True) as conn, conn.cursor() as cursor:
        create_roles(cursor, owner=OWNER_ROLE, app=APP_ROLE, database=BENCH_DB)
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [BYPASS_ROLE])
        verb = "ALTER" if cursor.fetchone() else "CREATE"
        cursor.execute(
            sql.SQL("{} ROLE {} LOGIN NOSUPERUSER BYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION NOINHERIT").format(
                sql.SQL(verb), sql.Identifier(BYPASS_ROLE)
            )
        )
        cursor.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(BENCH_DB), sql.Identifier(BYPASS_ROLE))
        )
        cursor.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(BYPASS_ROLE)))

    owner_url = f"postgres://{OWNER_ROLE}@{SERVER['host']}:{SERVER['port']}/{BENCH_DB}"
    os.environ["DATABASE_URL"] = owner_url
    os.environ["NEONPRO_MASTER_KEY"] = BENCH_MASTER_KEY
    os.environ["NEONPRO_DB_APP_ROLE"] = APP_ROLE
    os.environ["NEONPRO_DB_OWNER_ROLE"] = OWNER_ROLE
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neonpro.settings")
    os.environ.pop("REDIS_URL", None)


def _stored_fingerprint() -> str | None:
    try:
        with psycopg.connect(**_conninfo(SERVER["user"], BENCH_DB)) as conn:
            row = conn.execute("SELECT fingerprint FROM bench_rls_seed").fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None


def _drop_bypass_role() -> None:
    """The BYPASSRLS role exists only while the bench runs."""
    with psycopg.connect(**_conninfo(SERVER["user"], BENCH_DB), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [BYPASS_ROLE]).fetchone():
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(BYPASS_ROLE)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(BYPASS_ROLE)))


_prepare_environment()

import django

django.setup()

from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.db import connection
from django.db.models import Q

from neonpro.accounts.models import User
from neonpro.security.context import Identity, acting_as, system_context
from neonpro.security.db import grant_runtime_privileges
from neonpro.security.identity import FUNCTIONS, set_identity
from patients.models import CareTeamMembership, EmergencyAccessGrant, Patient
from records.models import MedicalRecord

TABLES = (
    "accounts_user",
    "patients_patient",
    "patients_careteammembership",
    "patients_emergencyaccessgrant",
    "records_medicalrecord",
)


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _plan() -> dict[str, Any]:
    """The deterministic data set, as plain values (ids, foreign keys, dates)."""
    rng = random.Random(SEED)
    clinicians = [_uuid(rng) for _ in range(CLINICIANS)]
    patients = [_uuid(rng) for _ in range(PATIENTS)]
    order = list(range(PATIENTS))
    rng.shuffle(order)
    teams: dict[int, list[int]] = {p: [] for p in range(PATIENTS)}
    memberships = []  # (patient index, clinician index, starts_on, ends_on)
    for slot, p in enumerate(order):
        for k in range(TEAM_PER_PATIENT):
            c = (TEAM_PER_PATIENT * slot + k) % CLINICIANS
            teams[p].append(c)
            memberships.append((p, c, dt.date(2019, 1, 1) + dt.timedelta(days=rng.randrange(1500)), None))
    for _ in range(ENDED_MEMBERSHIPS):
        start = dt.date(2015, 1, 1) + dt.timedelta(days=rng.randrange(1000))
        end = start + dt.timedelta(days=rng.randrange(30, 700))
        memberships.append((rng.randrange(PATIENTS), rng.randrange(CLINICIANS), start, end))
    for _ in range(FUTURE_MEMBERSHIPS):
        start = dt.date(2099, 1, 1) + dt.timedelta(days=rng.randrange(365))
        memberships.append((rng.randrange(PATIENTS), rng.randrange(CLINICIANS), start, None))
    grants = []  # (patient index, clinician index, granted_at, expires_at)
    for i in range(GRANTS):
        if i < ACTIVE_GRANTS:
            granted = dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=rng.randrange(10**6))
            expires = dt.datetime(2999, 1, 1, tzinfo=dt.UTC)  # still active today
        else:
            granted = dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=rng.randrange(10**6))
            expires = granted + dt.timedelta(hours=24)
        # The benched clinician (index 0) holds no active grant: their list is their care team.
        clinician = rng.randrange(1, CLINICIANS) if i < ACTIVE_GRANTS else rng.randrange(CLINICIANS)
        grants.append((rng.randrange(PATIENTS), clinician, granted, expires))
    records = []  # (patient index, provider clinician index, record_date)
    for _ in range(RECORDS):
        p = rng.randrange(PATIENTS)
        records.append((p, rng.choice(teams[p]), dt.date(2016, 1, 1) + dt.timedelta(days=rng.randrange(3650))))
    return {
        "clinicians": clinicians,
        "patients": patients,
        "memberships": memberships,
        "grants": grants,
        "records": records,
        "rng": rng,
    }


def _seed(plan: dict[str, Any]) -> None:
    rng: random.Random = plan["rng"]
    clinicians, patients = plan["clinicians"], plan["patients"]
    started = time.perf_counter()
    with system_context("bench/rls.py seeding"):
        User.objects.bulk_create(
            [
                User(id=cid, username=f"clinician{i:04d}", password=make_password(None), role="clinician")
                for i, cid in enumerate(clinicians)
            ],
            batch_size=1000,
        )
        first = ["Ada", "Ben", "Cleo", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivo", "June"]
        last = ["Lovelace", "Okafor", "Nguyen", "Schmidt", "Silva", "Kowalski", "Haddad", "Tanaka"]
        Patient.objects.bulk_create(
            [
                Patient(
                    id=pid,
                    full_name=f"{rng.choice(first)} {rng.choice(last)} {i}",
                    date_of_birth=dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(30000)),
                    ssn=f"{900 + i // 10_000:03d}-{(i // 100) % 100:02d}-{i % 100:04d}",
                    mrn=f"MRN-{i:08d}",
                    email=f"patient{i}@example.org",
                    phone=f"+1 555 {rng.randrange(10**7):07d}",
                    address=f"{rng.randrange(1, 9999)} {rng.choice(last)} Street, Springfield",
                )
                for i, pid in enumerate(patients)
            ],
            batch_size=1000,
        )
        CareTeamMembership.objects.bulk_create(
            [
                CareTeamMembership(
                    id=_uuid(rng), patient_id=patients[p], clinician_id=clinicians[c], starts_on=start, ends_on=end
                )
                for p, c, start, end in plan["memberships"]
            ],
            batch_size=2000,
            ignore_conflicts=True,  # a random ended/future membership may repeat (patient, clinician, start)
        )
        EmergencyAccessGrant.objects.bulk_create(
            [
                EmergencyAccessGrant(
                    id=_uuid(rng),
                    patient_id=patients[p],
                    clinician_id=clinicians[c],
                    reason="Unconscious patient in the emergency department, no care team reachable.",
                    granted_at=granted,
                    expires_at=expires,
                )
                for p, c, granted, expires in plan["grants"]
            ],
            batch_size=1000,
        )
        _log(f"  users, patients, care teams, grants: {time.perf_counter() - started:.1f} s")
        diagnoses = ["Hypertension", "Type 2 diabetes", "Asthma", "Migraine", "Osteoarthritis", "Anaemia"]
        drugs = ["metformin 500 mg", "lisinopril 10 mg", "salbutamol inhaler", "ibuprofen 400 mg", "none"]
        batch: list[MedicalRecord] = []
        for n, (p, c, record_date) in enumerate(plan["records"], 1):
            batch.append(
                MedicalRecord(
                    id=_uuid(rng),
                    patient_id=patients[p],
                    provider_id=clinicians[c],
                    record_date=record_date,
                    diagnosis=rng.choice(diagnoses),
                    treatment_plan=f"Review in {rng.randrange(1, 13)} weeks; lifestyle advice given.",
                    medications=rng.choice(drugs),
                    lab_results={"hba1c": round(rng.uniform(4.5, 9.5), 1), "ldl": round(rng.uniform(1.5, 5.0), 1)},
                    notes=f"Visit note {n}: patient reports {rng.choice(['improvement', 'no change', 'new pain'])}.",
                )
            )
            if len(batch) == 2000:
                MedicalRecord.objects.bulk_create(batch, batch_size=2000)
                batch = []
            if n % 20_000 == 0:
                _log(f"  records: {n:,} ({time.perf_counter() - started:.1f} s)")
        if batch:
            MedicalRecord.objects.bulk_create(batch, batch_size=2000)
    _log(f"  seeded in {time.perf_counter() - started:.1f} s")


def _mark_seeded() -> None:
    """Only a complete seed is reused: an interrupted one has no fingerprint and is recreated."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_rls_seed (fingerprint text NOT NULL)")
        cursor.execute("INSERT INTO bench_rls_seed VALUES (%s)", [FINGERPRINT])


def _seeded() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('bench_rls_seed') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return False
        cursor.execute("SELECT fingerprint FROM bench_rls_seed")
        row = cursor.fetchone()
    return bool(row) and row[0] == FINGERPRINT


def _prepare_tables() -> None:
    """Let the bypass role read the tables; vacuum and analyze them (autovacuum may be off)."""
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(
                sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(table), sql.Identifier(BYPASS_ROLE))
            )
            cursor.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
        for function in FUNCTIONS:  # the bypass side asks for a binding too: same transaction shape
            cursor.execute(sql.SQL(f"GRANT EXECUTE ON FUNCTION {function} TO {{}}").format(sql.Identifier(BYPASS_ROLE)))


def _queries(identity: Identity, team: list[uuid.UUID], patient: uuid.UUID) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """SQL and parameters of each measured query, as the app's scoped manager emits them for ``identity``."""
    newest_first = ("-record_date", "-created_at")
    with acting_as(identity):
        querysets = {
            "team": MedicalRecord.objects.filter(patient_id__in=team).order_by(*newest_first),
            "all": MedicalRecord.objects.order_by(*newest_first),
            "patient": MedicalRecord.objects.filter(patient_id=patient).order_by(*newest_first),
        }
        return {name: queryset.query.sql_with_params() for name, queryset in querysets.items()}


def _connect(role: str) -> psycopg.Connection[Any]:
    # As Django connects (settings: server_side_binding, no prepare_threshold): server-side
    # parameters, no prepared statements, text results.
    return psycopg.connect(**_conninfo(role, BENCH_DB), prepare_threshold=None)


def _once(conn: psycopg.Connection[Any], identity: Identity, query: str, params: Any) -> tuple[float, int]:
    """One transaction: set the signed identity (untimed), then run the query and fetch every row (timed)."""
    with conn.transaction(), conn.cursor() as cursor:
        set_identity(cursor, identity)
        start = time.perf_counter()
        cursor.execute(query, params)
        rows = len(cursor.fetchall())
        return time.perf_counter() - start, rows


def _pair(
    sides: dict[str, psycopg.Connection[Any]],
    order: tuple[str, str],
    identity: Identity,
    query: str,
    params: Any,
    n: int,
) -> dict[str, float]:
    """p50 seconds per side over ``n`` rounds; each round runs the query once per side, in ``order``."""
    timings: dict[str, list[float]] = {side: [] for side in order}
    for _ in range(n):
        for side in order:
            timings[side].append(_once(sides[side], identity, query, params)[0])
    return {side: statistics.median(values) for side, values in timings.items()}


def _explain(conn: psycopg.Connection[Any], identity: Identity, query: str, params: Any) -> str:
    with conn.transaction(), conn.cursor() as cursor:
        set_identity(cursor, identity)
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


LIST_PATIENT = "7e570000-0000-4000-9000-"
LIST_USER = "7e570000-0000-4000-8000-"
LIST_OTHERS = 200  # other clinicians, ~N/200 patients each
LIST_TEAMS = (10, 1000)


def _list_id(prefix: str, n: str) -> str:
    return f"('{prefix}' || lpad(to_hex({n}), 12, '0'))::uuid"


def _list_statements() -> list[str]:
    """The "my patients" data set: clinician 1 has 10 patients, clinician 2 1,000, 200 others the rest."""
    n = LIST_PATIENTS
    step10, step1000 = n // 10, n // 1000
    if step1000 < 2 or step10 % step1000:
        sys.exit("--list-patients: use at least 2,000 patients, a multiple of 10,000 or 3,000")
    team = f"CASE WHEN p % {step10} = 0 THEN 1 WHEN p % {step1000} = 1 THEN 2 END"
    # Placeholder ciphertexts of a real one's size: version byte, nonce, tag, payload (never decrypted).
    blob = "'\\x01'::bytea || decode(repeat('5a', 60), 'hex')"
    searchable = "decode(repeat('a5', 20), 'hex') || '\\x01'::bytea || decode(repeat('5a', 60), 'hex')"
    return [
        "SET LOCAL session_replication_role = replica",
        "INSERT INTO accounts_user (id, password, is_superuser, username, first_name, last_name, email, is_staff, "
        "is_active, date_joined, role, must_change_password) "
        f"SELECT {_list_id(LIST_USER, 'c')}, '!', false, 'list-' || c, '', '', '', false, true, now(), 'clinician', "
        f"false FROM generate_series(1, {LIST_OTHERS + 2}) c",
        "INSERT INTO patients_patient (id, full_name, date_of_birth, ssn, mrn, email, phone, address, created_at, "
        "updated_at, active, contact_by_email, contact_by_sms, user_id) "
        f"SELECT {_list_id(LIST_PATIENT, 'p')}, b, b, s, s, s, s, b, "
        f"timestamptz '2016-01-01' + p * interval '{max(1, 3_000_000 // n)} minutes', now(), true, false, false, NULL "
        f"FROM generate_series(1, {n}) p, (SELECT {blob} AS b, {searchable} AS s) v",
        # Every patient has one of the 200 others; the two benched teams come on top.
        "INSERT INTO patients_careteammembership (id, starts_on, ends_on, created_at, clinician_id, patient_id) "
        f"SELECT gen_random_uuid(), date '2016-01-01', NULL, now(), {_list_id(LIST_USER, f'3 + p % {LIST_OTHERS}')}, "
        f"{_list_id(LIST_PATIENT, 'p')} FROM generate_series(1, {n}) p",
        "INSERT INTO patients_careteammembership (id, starts_on, ends_on, created_at, clinician_id, patient_id) "
        f"SELECT gen_random_uuid(), date '2016-01-01', NULL, now(), {_list_id(LIST_USER, team)}, "
        f"{_list_id(LIST_PATIENT, 'p')} FROM generate_series(1, {n}) p WHERE {team} IS NOT NULL",
        # Ended memberships of the benched clinicians (they must not count) and expired grants.
        "INSERT INTO patients_careteammembership (id, starts_on, ends_on, created_at, clinician_id, patient_id) "
        f"SELECT gen_random_uuid(), date '2015-01-01', date '2015-06-01', now(), {_list_id(LIST_USER, '1 + p % 2')}, "
        f"{_list_id(LIST_PATIENT, f'1 + (p * 7919) % {n}')} FROM generate_series(1, 100) p",
        "INSERT INTO patients_emergencyaccessgrant (id, reason, granted_at, expires_at, ended_at, clinician_id, "
        f"patient_id, review_outcome) SELECT gen_random_uuid(), {blob}, timestamptz '2021-01-01', "
        f"timestamptz '2021-01-02', NULL, {_list_id(LIST_USER, f'1 + p % {LIST_OTHERS + 2}')}, "
        f"{_list_id(LIST_PATIENT, f'1 + (p * 104729) % {n}')}, '' FROM generate_series(1, {max(100, n // 100)}) p",
    ]


def _seed_list() -> None:
    started = time.perf_counter()
    _log(f"  my patients: {LIST_PATIENTS:,} more patients, in bulk")
    with psycopg.connect(**_conninfo(SERVER["user"], BENCH_DB)) as conn:
        for statement in _list_statements():
            conn.execute(statement)
    _log(f"  my patients: seeded in {time.perf_counter() - started:.1f} s")


def _list_queries(identity: Identity) -> tuple[tuple[str, Any], Any]:
    """The first page as the scoped manager sends it, and a function giving the page after a row."""
    newest_first = ("-created_at", "-id")
    with acting_as(identity):
        first = Patient.objects.order_by(*newest_first)[:50].query.sql_with_params()

    def after(created_at: Any, pid: Any) -> tuple[str, Any]:
        with acting_as(identity):
            queryset = Patient.objects.filter(
                Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=pid)
            ).order_by(*newest_first)[:50]
            return queryset.query.sql_with_params()

    return first, after


def _measure_list(iterations: int) -> dict[str, Any]:
    result: dict[str, Any] = {"list_patients": LIST_PATIENTS}
    conn = _connect(APP_ROLE)
    try:
        for size, user in zip(LIST_TEAMS, (1, 2), strict=True):
            identity = Identity(user_id=uuid.UUID(f"{LIST_USER}{user:012x}"), role="clinician")
            (query, params), after = _list_queries(identity)
            connection.close()
            with conn.transaction(), conn.cursor() as cursor:
                set_identity(cursor, identity)
                cursor.execute(query, params)
                page = cursor.fetchall()
                columns = [column.name for column in cursor.description or ()]
            assert len(page) == min(50, size), f"team of {size}: first page has {len(page)} rows"
            last = dict(zip(columns, page[-1], strict=True))
            next_query, next_params = after(last["created_at"], last["id"])
            connection.close()
            for name, (sql_text, sql_params) in (("", (query, params)), ("_next_page", (next_query, next_params))):
                for _ in range(min(20, iterations)):  # warm caches
                    _once(conn, identity, sql_text, sql_params)
                timings = [_once(conn, identity, sql_text, sql_params)[0] for _ in range(iterations)]
                result[f"my_patients_team{size}{name}_ms_p50"] = round(statistics.median(timings) * 1000, 3)
                _log(f"EXPLAIN ANALYZE my patients, team of {size}{name.replace('_', ' ')} ({APP_ROLE}):")
                _log(_explain(conn, identity, sql_text, sql_params))
            _log(f"  team of {size}: {result[f'my_patients_team{size}_ms_p50']} ms p50")
    finally:
        conn.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=200, help="queries per side per pair")
    parser.add_argument("--smoke", action="store_true", help="tiny data set of its own: checks that the bench runs")
    parser.add_argument("--database", default="neonpro_bench_rls", help="name of the bench database")
    parser.add_argument("--list-patients", type=int, default=0, help='patients for the "my patients" list')
    parser.add_argument("--lists-only", action="store_true", help='only the "my patients" list (and its data)')
    args = parser.parse_args()

    try:
        call_command("migrate", verbosity=0)
        assert grant_runtime_privileges("default"), f"role {APP_ROLE} is missing"
        plan = _plan()
        if _seeded():
            _log(f"{BENCH_DB}: already seeded ({RECORDS:,} records over {PATIENTS:,} patients), reusing it")
        else:
            _log(f"seeding {BENCH_DB}" + ("" if LISTS_ONLY else f": {RECORDS:,} records over {PATIENTS:,} patients"))
            if not LISTS_ONLY:
                _seed(plan)
            if LIST_PATIENTS:
                _seed_list()
            _mark_seeded()
        _prepare_tables()
        result: dict[str, Any] = {} if args.lists_only else _measure(plan, args.pairs, args.iterations)
        if LIST_PATIENTS:
            result |= _measure_list(args.iterations)
    finally:
        connection.close()
        _drop_bypass_role()
    print(json.dumps(result))


def _measure(plan: dict[str, Any], pairs: int, iterations: int) -> dict[str, Any]:
    clinician = plan["clinicians"][0]
    team_indexes = {p for p, c, start, end in plan["memberships"] if c == 0 and end is None and start.year < 2099}
    team = [plan["patients"][p] for p in sorted(team_indexes)]
    expected = {
        "team": sum(1 for p, _, _ in plan["records"] if p in team_indexes),
        "patient": sum(1 for p, _, _ in plan["records"] if p == min(team_indexes)),
    }
    expected["all"] = expected["team"]
    identity = Identity(user_id=clinician, role="clinician")
    queries = _queries(identity, team, plan["patients"][min(team_indexes)])
    connection.close()
    guc = identity
    _log(f"clinician {clinician}: {len(team)} patients on the care team, {expected['team']} records")
    for name, (query, _) in queries.items():
        _log(f"{name} query ({expected[name]} rows): {query}")
    sides = {"rls": _connect(APP_ROLE), "bypass": _connect(BYPASS_ROLE)}
    try:
        for side, conn in sides.items():
            # RLS filters the app role and not the bypass role; each query returns the same rows on both.
            with conn.transaction(), conn.cursor() as cursor:
                set_identity(cursor, guc)
                visible = conn.execute("SELECT count(*) FROM records_medicalrecord").fetchone()[0]
            want = expected["team"] if side == "rls" else RECORDS
            assert visible == want, f"{side}: {visible} records visible without a WHERE, expected {want}"
            for name, (query, params) in queries.items():
                for _ in range(20):  # warm caches
                    _, rows = _once(conn, guc, query, params)
                assert rows == expected[name], f"{side}/{name}: {rows} rows, expected {expected[name]}"
        for name, (query, params) in queries.items():
            for side in ("rls", "bypass"):
                _log(f"EXPLAIN ANALYZE {name} query, {side} ({APP_ROLE if side == 'rls' else BYPASS_ROLE}):")
                _log(_explain(sides[side], guc, query, params))
        results: dict[str, list[dict[str, float]]] = {name: [] for name in queries}
        for i in range(pairs):
            order = ("rls", "bypass") if i % 2 == 0 else ("bypass", "rls")
            for name, (query, params) in queries.items():
                p50 = _pair(sides, order, guc, query, params, iterations)
                results[name].append(
                    {
                        "ratio": p50["rls"] / p50["bypass"],
                        "rls_ms": p50["rls"] * 1000,
                        "bypass_ms": p50["bypass"] * 1000,
                    }
                )
                _log(
                    f"  pair {i + 1} ({order[0]} first) {name}: "
                    + ", ".join(f"{k}={v:.3f}" for k, v in results[name][-1].items())
                )
    finally:
        for conn in sides.values():
            conn.close()

    def med(name: str, key: str) -> float:
        return round(statistics.median(r[key] for r in results[name]), 3)

    return {
        "rls_ratio": med("team", "ratio"),
        "records": RECORDS,
        "patients": PATIENTS,
        "care_team_size": len(team),
        "rows_returned": expected["team"],
        "rls_ms_p50": med("team", "rls_ms"),
        "bypass_ms_p50": med("team", "bypass_ms"),
        "pairs": pairs,
        "iterations": iterations,
        "all_rls_ratio": med("all", "ratio"),
        "all_rls_ms_p50": med("all", "rls_ms"),
        "all_bypass_ms_p50": med("all", "bypass_ms"),
        "patient_rls_ratio": med("patient", "ratio"),
        "patient_rls_ms_p50": med("patient", "rls_ms"),
        "patient_bypass_ms_p50": med("patient", "bypass_ms"),
    }


if __name__ == "__main__":
    main()

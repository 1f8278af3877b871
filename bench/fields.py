"""Benchmark: encrypted Patient fields vs plaintext vs django-cryptography, on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/neonpro python bench/fields.py \
        [--rows 10000] [--pairs 5] [--lookup-rows 100000] [--lookup-samples 500]

``DATABASE_URL`` names a superuser; the bench creates and reuses the throw-away database
``neonpro_bench_fields``, migrates it as ``neonpro_owner`` and measures as the application
role ``neonpro_app`` with row-level security in force, as production runs. The plaintext and
django-cryptography twins of ``Patient`` get the same columns, indexes and row-level-security
policies as ``patients_patient``, so the only difference measured is the field encryption.
Every side runs inside the system identity (``system_context``), which the policies let see
every row.

Workload per run: build N patients and ``bulk_create`` them (write), then load all of them
and read every PHI field once (read). Runs alternate (plaintext, encrypted) and
(django-cryptography, encrypted) in pairs, which side goes first alternating too, and the
figures are the medians of the pairs' ratios; the lookup figure is the p50 of
``Patient.objects.get(ssn=...)`` among ``--lookup-rows`` rows. The storage figures are bytes
per patient (``pg_total_relation_size``: heap, TOAST and every index, divided by the rows)
of ``patients_patient`` and of the plaintext twin, each holding the same ``--lookup-rows``
patients written by ``bulk_create``, and their ratio. ``NEONPRO_BENCH_DB`` names another
throw-away database. Progress goes to stderr; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
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

BENCH_DB = os.environ.get("NEONPRO_BENCH_DB", "neonpro_bench_fields")
benchdb.prepare(BENCH_DB, script="bench/fields.py")
os.environ["NEONPRO_MASTER_KEY"] = benchdb.master_key("bench/fields.py")

import django

django.setup()

from django.conf import settings
from django.core.management import call_command
from django.db import connection, models
from django_cryptography.fields import encrypt

from keys.keyring import keyring
from neonpro.security.context import system_context
from neonpro.security.rls import policy_statements
from patients.models import Patient


class PlainPatient(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    full_name = models.CharField(max_length=200)
    date_of_birth = models.DateField()
    ssn = models.CharField(max_length=11, null=True, blank=True, db_index=True)
    mrn = models.CharField(max_length=32, db_index=True)
    email = models.CharField(max_length=254, null=True, blank=True, db_index=True)
    phone = models.CharField(max_length=32, null=True, blank=True, db_index=True)
    address = models.TextField(null=True, blank=True)
    contact_by_email = models.BooleanField(default=False)
    contact_by_sms = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    active = models.BooleanField(default=True)

    class Meta:
        app_label = "bench"

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


class DjCryptoPatient(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    full_name = encrypt(models.CharField(max_length=200))
    date_of_birth = encrypt(models.DateField())
    ssn = encrypt(models.CharField(max_length=11, null=True, blank=True))
    mrn = encrypt(models.CharField(max_length=32))
    email = encrypt(models.CharField(max_length=254, null=True, blank=True))
    phone = encrypt(models.CharField(max_length=32, null=True, blank=True))
    address = encrypt(models.TextField(null=True, blank=True))
    contact_by_email = models.BooleanField(default=False)
    contact_by_sms = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    active = models.BooleanField(default=True)

    class Meta:
        app_label = "bench"

    def __str__(self) -> str:
        return f"{type(self).__name__} {self.pk}"


FIELDS = ("full_name", "date_of_birth", "ssn", "mrn", "email", "phone", "address")
MODELS: dict[str, type[models.Model]] = {"plain": PlainPatient, "ours": Patient, "djcrypto": DjCryptoPatient}


def _rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    first = ["Ada", "Ben", "Cleo", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivo", "June"]
    last = ["Lovelace", "Okafor", "Nguyen", "Schmidt", "Silva", "Kowalski", "Haddad", "Tanaka"]
    return [
        {
            "full_name": f"{rng.choice(first)} {rng.choice(last)} {i}",
            "date_of_birth": dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(30000)),
            "ssn": f"{900 + i // 10_000_000:03d}-{(i // 10_000) % 100:02d}-{i % 10_000:04d}",
            "mrn": f"MRN-{i:08d}",
            "email": f"patient{i}@example.org",
            "phone": f"+1 555 {rng.randrange(10**7):07d}",
            "address": f"{rng.randrange(1, 9999)} {rng.choice(last)} Street, Springfield",
        }
        for i in range(n)
    ]


def _truncate(model: type[models.Model]) -> None:
    """Untimed, as the owner (the application role may not TRUNCATE: it ignores RLS)."""
    with benchdb.owner() as conn:
        # CASCADE reaches the medical record history, whose trigger refuses TRUNCATE even to
        # its owner; the throw-away bench database lifts it for this one statement.
        conn.execute("ALTER TABLE records_medicalrecordrevision DISABLE TRIGGER USER")
        try:
            conn.execute(f'TRUNCATE "{model._meta.db_table}" CASCADE')
        finally:
            conn.execute("ALTER TABLE records_medicalrecordrevision ENABLE TRIGGER USER")


def _create_twins() -> None:
    """The plaintext and django-cryptography tables, with patients_patient's policies (as the owner)."""
    from neonpro.security.rls import agent_policies

    policies = agent_policies()["patients_patient"]  # today's policies (patients 0008)
    with connection.schema_editor() as editor:
        for model in (PlainPatient, DjCryptoPatient):
            editor.execute(f'DROP TABLE IF EXISTS "{model._meta.db_table}"')
            editor.create_model(model)
            for statement in policy_statements(model._meta.db_table, policies):
                editor.execute(statement)


def _run(kind: str, rows: list[dict[str, Any]]) -> tuple[float, float]:
    model = MODELS[kind]
    _truncate(model)
    gc.collect()
    with system_context("bench/fields.py write"):
        start = time.perf_counter()
        model.objects.bulk_create([model(**row) for row in rows], batch_size=1000)
        write = time.perf_counter() - start
    gc.collect()
    touched = 0
    with system_context("bench/fields.py read"):
        start = time.perf_counter()
        for obj in model.objects.all().iterator(chunk_size=2000):
            for name in FIELDS:
                getattr(obj, name)
            touched += 1
        read = time.perf_counter() - start
    assert touched == len(rows), f"{kind}: read {touched} rows, wrote {len(rows)}"
    return write, read


def _pairs(a: str, b: str, rows: list[dict[str, Any]], pairs: int) -> list[dict[str, float]]:
    results = []
    for i in range(pairs):
        order = [(a, b), (b, a)][i % 2]  # alternate which side goes first
        timings = {kind: _run(kind, rows) for kind in order}
        results.append(
            {
                "write_ratio": timings[b][0] / timings[a][0],
                "read_ratio": timings[b][1] / timings[a][1],
                "total_ratio": sum(timings[a]) / sum(timings[b]),
                f"{a}_write_us": timings[a][0] / len(rows) * 1e6,
                f"{a}_read_us": timings[a][1] / len(rows) * 1e6,
                f"{b}_write_us": timings[b][0] / len(rows) * 1e6,
                f"{b}_read_us": timings[b][1] / len(rows) * 1e6,
            }
        )
        print(f"  pair {i + 1}: " + ", ".join(f"{k}={v:.3f}" for k, v in results[-1].items()), file=sys.stderr)
    return results


def _lookup_ssn(i: int) -> str:
    return f"{100 + i // 10_000:03d}-{(i // 100) % 100:02d}-{i % 100:02d}{i % 7}{i % 3}"


def _seed(model: type[models.Model], n: int) -> None:
    """``n`` distinct patients into ``model``'s table, the same plaintexts for every model."""
    _truncate(model)
    for offset in range(0, n, 10_000):
        chunk = _rows(min(10_000, n - offset), seed=offset)
        for j, row in enumerate(chunk):
            row["ssn"] = _lookup_ssn(offset + j)
            row["mrn"] = f"MRN-{offset + j:08d}"
        with system_context("bench/fields.py seed"):
            model.objects.bulk_create([model(**row) for row in chunk], batch_size=1000)
    with benchdb.owner() as conn:
        conn.execute(f'ANALYZE "{model._meta.db_table}"')


def _lookup(n: int, samples: int) -> float:
    _seed(Patient, n)
    rng = random.Random(7)
    targets = [_lookup_ssn(rng.randrange(n)) for _ in range(samples)]
    timings = []
    with system_context("bench/fields.py lookups"):
        Patient.objects.get(ssn=targets[0])  # warm caches and the key ring
        for ssn in targets:
            start = time.perf_counter()
            found = Patient.objects.get(ssn=ssn)
            timings.append(time.perf_counter() - start)
            assert found.ssn == ssn
    return statistics.median(timings) * 1000


def _relation_bytes(model: type[models.Model]) -> dict[str, int]:
    """Bytes on disk of ``model``'s table: heap, TOAST (with its index) and every index."""
    with benchdb.owner() as conn:
        row = conn.execute(
            "SELECT pg_total_relation_size(c.oid), pg_relation_size(c.oid), pg_indexes_size(c.oid), "
            "coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) "
            "FROM pg_class c WHERE c.oid = %s::regclass",
            [model._meta.db_table],
        ).fetchone()
        indexes = conn.execute(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
            "WHERE indrelid = %s::regclass ORDER BY 1",
            [model._meta.db_table],
        ).fetchall()
    assert row is not None
    total, heap, index, toast = row
    print(f"  {model._meta.db_table}: total {total}, heap {heap}, indexes {index}, toast {toast}", file=sys.stderr)
    for name, size in indexes:
        print(f"    {name}: {size}", file=sys.stderr)
    return {"total": total, "heap": heap, "indexes": index, "toast": toast}


def _storage(n: int) -> dict[str, Any]:
    """Bytes per patient, encrypted against the plaintext twin, both holding the same ``n``
    patients written by ``bulk_create`` (as the application role): the table with its
    indexes and TOAST, per row. Expects ``Patient`` seeded by :func:`_lookup`."""
    _seed(PlainPatient, n)
    ours, plain = _relation_bytes(Patient), _relation_bytes(PlainPatient)
    _truncate(PlainPatient)
    figures: dict[str, Any] = {"storage_rows": n}
    for part in ("total", "heap", "indexes", "toast"):
        suffix = "" if part == "total" else f"_{part}"
        figures[f"ours_bytes_per_patient{suffix}"] = round(ours[part] / n, 1)
        figures[f"plain_bytes_per_patient{suffix}"] = round(plain[part] / n, 1)
    figures["bytes_per_patient_ratio"] = round(ours["total"] / plain["total"], 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--lookup-rows", type=int, default=100_000)
    parser.add_argument("--lookup-samples", type=int, default=500)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    # The signed RLS identity needs its key installed where the policies verify it (as the owner).
    call_command("keys", "init", verbosity=0)
    call_command("db", "identity-keys", verbosity=0)
    _create_twins()
    benchdb.use_app_role()
    _truncate(Patient)
    keyring.clear()
    rows = _rows(args.rows, seed=1)
    _run("ours", rows[:500])  # warm-up: key creation, caches, query plans
    _run("plain", rows[:500])
    _run("djcrypto", rows[:500])

    print("plaintext vs encrypted:", file=sys.stderr)
    plain = _pairs("plain", "ours", rows, args.pairs)
    print("django-cryptography vs encrypted:", file=sys.stderr)
    djc = _pairs("djcrypto", "ours", rows, args.pairs)
    print(f"lookup among {args.lookup_rows} rows:", file=sys.stderr)
    lookup_ms = _lookup(args.lookup_rows, args.lookup_samples)
    print(f"storage of {args.lookup_rows} patients:", file=sys.stderr)
    storage = _storage(args.lookup_rows)

    def med(results: list[dict[str, float]], key: str) -> float:
        return round(statistics.median(r[key] for r in results), 3)

    result = {
        "rows": args.rows,
        "pairs": args.pairs,
        "write_ratio": med(plain, "write_ratio"),
        "read_ratio": med(plain, "read_ratio"),
        "djcrypto_ratio": med(djc, "total_ratio"),
        "lookup_ms_p50": round(lookup_ms, 3),
        "lookup_rows": args.lookup_rows,
        "plain_write_us_per_row": med(plain, "plain_write_us"),
        "plain_read_us_per_row": med(plain, "plain_read_us"),
        "ours_write_us_per_row": med(plain, "ours_write_us"),
        "ours_read_us_per_row": med(plain, "ours_read_us"),
        "djcrypto_write_us_per_row": med(djc, "djcrypto_write_us"),
        "djcrypto_read_us_per_row": med(djc, "djcrypto_read_us"),
        **storage,
    }
    for model in (PlainPatient, DjCryptoPatient, Patient):
        _truncate(model)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

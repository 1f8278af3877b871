"""Benchmark: re-encrypting every Patient onto new data keys (``keys.reencrypt``), on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/neonpro python bench/reencrypt.py \
        [--rows 100000] [--scale-rows 200000] [--batch 500,2000]
    # where the time goes: one small run under cProfile (the profile goes to stderr)
    ... python bench/reencrypt.py --rows 20000 --scale-rows 0 --batch 500 --profile

DATABASE_URL names a superuser (trust or password auth). Everything runs as that superuser:
row-level security is not what is measured here, and a superuser bypasses it even on FORCE
RLS tables (``system_context`` still sets its identity, harmlessly).

Data (deterministic: row ``i``'s id and values are a pure function of ``i``): N patients with
all seven encrypted fields set, four of them searchable (blind index + envelope). Each row
count has its own throw-away database ``neonpro_bench_reencrypt_<N>``, migrated and seeded
once with ``bulk_create`` inside ``system_context`` and reused while the seed fingerprint
stored in it matches and it holds exactly N patients whose values decrypt (otherwise it is
recreated). The master key is fixed, so a rerun can read what an earlier run seeded.

Measurement: each (rows, batch size) runs in a fresh child process, so its peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``) is its own. The child rotates the ``field`` and the
``index`` data keys (every stored value is now under an old key), runs ``VACUUM (ANALYZE)``
on the table and a ``CHECKPOINT`` (untimed), then times ``reencrypt("field", batch=B)``
— wall time of the call, which covers every model with encrypted fields (only
``patients_patient`` has rows). ``rows_per_s = rows / seconds``; ``sql_seconds`` is the part
of it spent executing statements on the default connection (a Django ``execute_wrapper``),
the rest is Python, mostly decrypting and re-encrypting. The child then checks that the
Patient job is done with ``rows_changed == rows``, retires the previous keys (which counts,
by a scan, that no stored value still uses them) and decrypts a few rows against their seed.
The next measurement rotates again, so there is always a full table of work.

The headline (``rows``, ``rows_per_s``, ``peak_rss_mb``, ``batch``) is the faster batch size
at ``--rows``; the ``*_200k`` keys are the same batch size at ``--scale-rows`` (default
2 x ``--rows``; ``rows_200k`` is that row count) and ``rss_growth_mb`` the difference of
the two peaks. ``runs`` lists every measurement. Progress goes to stderr; the last line
printed is one JSON object.
"""

from __future__ import annotations

import argparse
import base64
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
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB_PREFIX = "neonpro_bench_reencrypt"
SEED = 20261128
SEED_VERSION = 1
SEED_CHUNK = 10_000
TARGET_ROWS_PER_S = 5_000
# The bench databases are disposable and their data synthetic: a fixed master key lets a
# rerun decrypt what an earlier run seeded.
BENCH_MASTER_KEY = base64.b64encode(hashlib.sha256(b"neonpro bench/reencrypt.py master key").digest()).decode()
FIRST = ["Ada", "Ben", "Cleo", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivo", "June"]
LAST = ["Lovelace", "Okafor", "Nguyen", "Schmidt", "Silva", "Kowalski", "Haddad", "Tanaka"]
FIELDS = ("full_name", "date_of_birth", "ssn", "mrn", "email", "phone", "address")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _fingerprint(rows: int) -> str:
    master = hashlib.sha256(BENCH_MASTER_KEY.encode()).hexdigest()[:16]
    return json.dumps({"version": SEED_VERSION, "seed": SEED, "rows": rows, "master": master}, sort_keys=True)


def _row(i: int) -> tuple[uuid.UUID, dict[str, Any]]:
    """Row ``i``: its primary key (random-looking, like uuid4) and its PHI values."""
    digest = hashlib.blake2b(f"bench/reencrypt.py {SEED} {i}".encode(), digest_size=32).digest()
    n = int.from_bytes(digest[16:], "big")
    return uuid.UUID(bytes=digest[:16], version=4), {
        "full_name": f"{FIRST[n % 10]} {LAST[(n >> 8) % 8]} {i}",
        "date_of_birth": dt.date(1930, 1, 1) + dt.timedelta(days=(n >> 16) % 30_000),
        "ssn": f"{900 + i // 1_000_000:03d}-{(i // 10_000) % 100:02d}-{i % 10_000:04d}",
        "mrn": f"MRN-{i:08d}",
        "email": f"patient{i}@example.org",
        "phone": f"+1 555 {(n >> 32) % 10**7:07d}",
        "address": f"{(n >> 64) % 9_998 + 1} {LAST[(n >> 80) % 8]} Street, Springfield",
    }


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# -- database (child processes) ------------------------------------------------------------


def _server_url(dbname: str) -> str:
    parts = urlsplit(os.environ["BENCH_SERVER_URL"])
    return urlunsplit(parts._replace(path=f"/{dbname}"))


def _stored_fingerprint(dbname: str) -> str | None:
    import psycopg

    try:
        with psycopg.connect(_server_url(dbname)) as conn:
            row = conn.execute("SELECT fingerprint FROM bench_reencrypt_seed").fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None


def _create_database(dbname: str, *, drop: bool) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(_server_url("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
        if exists and drop:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))
            exists = None
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def _prepare_environment(rows: int) -> str:
    """Point Django at this row count's bench database (created if missing) and set up Django."""
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/neonpro")
    if not url.startswith("postgres"):
        sys.exit("bench/reencrypt.py runs on PostgreSQL: set DATABASE_URL=postgres://...")
    os.environ["BENCH_SERVER_URL"] = url
    dbname = f"{BENCH_DB_PREFIX}_{rows}"
    stale = _stored_fingerprint(dbname) != _fingerprint(rows)
    _create_database(dbname, drop=False)
    os.environ["DATABASE_URL"] = _server_url(dbname)
    os.environ["NEONPRO_MASTER_KEY"] = BENCH_MASTER_KEY
    os.environ["DJANGO_DEBUG"] = "False"  # DEBUG keeps every query (and its parameters) in memory
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neonpro.settings")
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    return "stale" if stale else dbname


def _patient_count() -> int:
    from neonpro.security.context import system_context
    from patients.models import Patient

    with system_context("bench/reencrypt.py: count patients"):
        return int(Patient._base_manager.count())


def _check_sample(rows: int) -> None:
    """Decrypt a few rows (first, middle, last) and compare them with their seed values."""
    from neonpro.security.context import system_context
    from patients.models import Patient

    with system_context("bench/reencrypt.py: check sample rows"):
        for i in sorted({0, rows // 2, rows - 1}):
            pk, values = _row(i)
            patient = Patient._base_manager.get(pk=pk)
            for name in FIELDS:
                got = getattr(patient, name)
                assert got == values[name], f"row {i} {name}: {got!r} != {values[name]!r}"
            assert Patient._base_manager.filter(ssn=values["ssn"]).count() == 1, f"row {i}: SSN lookup failed"


def _vacuum() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) patients_patient")


def _seed_phase(rows: int) -> dict[str, Any]:
    dbname = _prepare_environment(rows)
    from django.core.management import call_command
    from django.db import connection, connections

    if dbname != "stale":
        call_command("migrate", verbosity=0)
        try:
            count = _patient_count()
            _check_sample(rows)
        except Exception as exc:  # anything wrong with the data means: reseed
            count = -1
            _log(f"  {dbname}: sample check failed ({type(exc).__name__}: {exc})")
        if count == rows:
            _log(f"{dbname}: already seeded with {rows:,} patients, reusing it")
            return {"rows": rows, "seeded": False}
        _log(f"{dbname}: holds {count:,} patients, not {rows:,}")
    dbname = f"{BENCH_DB_PREFIX}_{rows}"
    _log(f"seeding {dbname}: {rows:,} patients")
    connections.close_all()
    _create_database(dbname, drop=True)
    call_command("migrate", verbosity=0)

    from keys.keyring import keyring
    from neonpro.security.context import system_context
    from patients.models import Patient

    keyring.clear()
    started = time.perf_counter()
    for offset in range(0, rows, SEED_CHUNK):
        patients = []
        for i in range(offset, min(offset + SEED_CHUNK, rows)):
            pk, values = _row(i)
            patients.append(Patient(id=pk, **values))
        with system_context("bench/reencrypt.py seeding"):
            Patient.objects.bulk_create(patients, batch_size=2000)
        done = offset + len(patients)
        if done % 50_000 == 0 or done == rows:
            _log(f"  {done:,} patients ({time.perf_counter() - started:.1f} s)")
    seconds = time.perf_counter() - started
    _vacuum()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_reencrypt_seed (fingerprint text NOT NULL)")
        cursor.execute("INSERT INTO bench_reencrypt_seed VALUES (%s)", [_fingerprint(rows)])
    assert _patient_count() == rows
    _check_sample(rows)
    _log(f"  seeded in {seconds:.1f} s ({seconds / rows * 1e6:.0f} µs/row)")
    return {"rows": rows, "seeded": True, "seed_seconds": round(seconds, 1)}


def _measure_phase(rows: int, batch: int, profile: bool) -> dict[str, Any]:
    dbname = _prepare_environment(rows)
    if dbname == "stale":
        sys.exit(f"{BENCH_DB_PREFIX}_{rows} is not seeded: run bench/reencrypt.py without --phase")
    from django.db import connection

    from keys.models import DataKey, ReencryptionJob
    from keys.reencrypt import reencrypt
    from keys.rotation import retire_data_key, rotate_data_key, settled_at

    count = _patient_count()
    assert count == rows, f"{dbname} holds {count} patients, expected {rows}"
    purposes = (DataKey.Purpose.FIELD, DataKey.Purpose.INDEX)
    for purpose in purposes:
        rotate_data_key(purpose)  # every stored value is now under an old key
    _vacuum()
    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")
    gc.collect()
    rss_before = _rss_mb()

    step = max(rows // 5, batch)

    def progress(job: ReencryptionJob, rate: float) -> None:
        if job.rows_done % step < batch or job.rows_done == job.rows_total:
            _log(f"    {job.model}: {job.rows_done:,}/{job.rows_total:,} rows, {rate:,.0f} rows/s")

    _log(f"  re-encrypting {rows:,} patients, batch {batch}{' (under cProfile)' if profile else ''}")
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

    patient_jobs = [job for job in jobs if job.model == "patients.Patient"]
    assert len(patient_jobs) == 1, [job.model for job in jobs]
    job = patient_jobs[0]
    assert all(j.status == ReencryptionJob.Status.DONE for j in jobs), [(j.model, j.status) for j in jobs]
    assert job.rows_done == rows and job.rows_changed == rows, (job.rows_done, job.rows_changed, rows)
    assert sum(j.rows_changed for j in jobs) == rows
    for old in DataKey.objects.filter(purpose__in=purposes, status=DataKey.Status.DECRYPT_ONLY):
        # Clock past the quiet period (no other process writes here); it still counts every value.
        retire_data_key(old, now=settled_at(old))  # refuses if any stored value still uses the old key
    _check_sample(rows)
    if profiler is not None:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs()
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(40)
        _log(out.getvalue())
    result = {
        "rows": rows,
        "batch": batch,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds, 1),
        "peak_rss_mb": round(peak, 1),
        "rss_before_mb": round(rss_before, 1),
        "sql_seconds": round(sql_seconds, 2),
        "rows_changed": job.rows_changed,
        "profiled": profile,
    }
    _log(
        f"  {rows:,} rows in {seconds:.2f} s ({sql_seconds:.2f} s in SQL on the default connection): "
        f"{rows / seconds:,.0f} rows/s, peak RSS {peak:.1f} MB"
    )
    return result


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


def _orchestrate(rows: int, scale_rows: int, batches: list[int], profile: bool) -> dict[str, Any]:
    started = time.perf_counter()
    sizes = [rows] + ([scale_rows] if scale_rows else [])
    for size in sizes:
        _child("--phase", "seed", "--rows", str(size))
    runs = []
    for size in sizes:
        for batch in batches:
            _log(f"measure: {size:,} rows, batch {batch} (fresh process)")
            extra = ["--profile"] if profile else []
            runs.append(_child("--phase", "measure", "--rows", str(size), "--batch", str(batch), *extra))
    best = max((r for r in runs if r["rows"] == rows), key=lambda r: r["rows_per_s"])
    result: dict[str, Any] = {
        "rows": rows,
        "rows_per_s": best["rows_per_s"],
        "peak_rss_mb": best["peak_rss_mb"],
        "batch": best["batch"],
        "seconds": best["seconds"],
    }
    if scale_rows:
        big = next(r for r in runs if r["rows"] == scale_rows and r["batch"] == best["batch"])
        result.update(
            rows_200k=scale_rows,
            rows_per_s_200k=big["rows_per_s"],
            peak_rss_mb_200k=big["peak_rss_mb"],
            rss_growth_mb=round(big["peak_rss_mb"] - best["peak_rss_mb"], 1),
            seconds_200k=big["seconds"],
        )
    result["target_rows_per_s"] = TARGET_ROWS_PER_S
    result["profiled"] = profile
    result["runs"] = [
        {k: r[k] for k in ("rows", "batch", "seconds", "sql_seconds", "rows_per_s", "peak_rss_mb", "rss_before_mb")}
        for r in runs
    ]
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="patients in the headline run")
    parser.add_argument(
        "--scale-rows", type=int, default=None, help="patients in the memory-scaling run (default 2 x --rows; 0: none)"
    )
    parser.add_argument("--batch", default="500,2000", help="batch sizes to measure, comma-separated")
    parser.add_argument("--profile", action="store_true", help="run the re-encryption under cProfile (stderr)")
    parser.add_argument("--phase", choices=("seed", "measure"), help=argparse.SUPPRESS)  # child processes
    args = parser.parse_args()
    batches = [int(b) for b in args.batch.split(",") if b.strip()]
    if args.rows < 1 or not batches:
        parser.error("--rows and --batch must be positive")

    if args.phase == "seed":
        result = _seed_phase(args.rows)
    elif args.phase == "measure":
        result = _measure_phase(args.rows, batches[0], args.profile)
    else:
        scale_rows = 2 * args.rows if args.scale_rows is None else args.scale_rows
        result = _orchestrate(args.rows, scale_rows, batches, args.profile)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

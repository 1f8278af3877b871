"""Run every benchmark in bench/ at a tiny size and check that it still works (CI: make bench-smoke).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/neonpro python bench/smoke.py

Each benchmark must exit 0 and print one JSON object as its last line, holding the figures it
promises. Only that is checked, never the figures themselves (a tiny run on a shared CI
machine measures nothing). A benchmark file without an entry below fails the run, so a new
benchmark cannot be left out of CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
HELPERS = {"smoke.py", "benchdb.py", "api_server.py"}
# benchmark -> (tiny-size arguments, keys its JSON line must carry)
SMOKE_RUNS: dict[str, tuple[list[str], set[str]]] = {
    "api.py": (
        ["--clinicians", "2", "--team", "60", "--records", "2", "--duration", "2", "--warmup", "0.5"],
        {"rps_list", "rps_detail", "p99_ms_detail", "crypto_share"},
    ),
    "fields.py": (
        ["--rows", "200", "--pairs", "1", "--lookup-rows", "500", "--lookup-samples", "20"],
        {"write_ratio", "read_ratio", "djcrypto_ratio", "lookup_ms_p50", "bytes_per_patient_ratio"},
    ),
    "rls.py": (
        ["--smoke", "--pairs", "1", "--iterations", "5", "--list-patients", "3000"],
        {"rls_ratio", "rls_ms_p50", "bypass_ms_p50", "my_patients_team10_ms_p50", "my_patients_team1000_ms_p50"},
    ),
    "load.py": (
        ["--clients", "2,4", "--duration", "2", "--patients", "40", "--rush", "4", "--rush-clients", "2"],
        {"errors_at_max", "peak_connections", "pool_total", "fraction_at_max", "rush_p99_ratio"},
    ),
    "reencrypt.py": (
        ["--patients", "300", "--records", "300", "--batch", "100"],
        {"rows_per_s", "rows", "seconds", "count_seconds", "peak_rss_mb", "role"},
    ),
    "scale.py": (
        ["--patients", "300", "--records", "400", "--samples", "2"],
        {"list_p50_ms_team10", "list_p50_ms_team1000", "timeline_p50_ms", "search_p50_ms", "reencrypt_rows_per_s"}
        | {"bytes_per_patient", "patient_bytes_ratio", "bytes_per_record", "record_bytes_ratio"}
        | {"reencrypt_parallel_rows_per_s"},
    ),
}


def run(name: str, args: list[str], keys: set[str]) -> str | None:
    """None when the benchmark ran and printed its JSON line, else what went wrong."""
    started = time.monotonic()
    result = subprocess.run(  # noqa: S603 - our own scripts
        [sys.executable, str(BENCH / name), *args], capture_output=True, text=True, timeout=900, check=False
    )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        return f"exited {result.returncode} after {seconds:.0f}s:\n{result.stderr[-3000:]}"
    lines = result.stdout.strip().splitlines()
    try:
        figures = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        figures = None
    if not isinstance(figures, dict):
        return f"last line of stdout is not a JSON object: {lines[-1:]!r}"
    missing = keys - figures.keys()
    if missing:
        return f"JSON line lacks {sorted(missing)}: {lines[-1]}"
    print(f"ok    bench/{name} ({seconds:.0f}s): {lines[-1]}")
    return None


def main() -> int:
    present = {p.name for p in BENCH.glob("*.py")} - HELPERS
    failures = [
        f"bench/{name}: no smoke run configured in bench/smoke.py" for name in sorted(present - SMOKE_RUNS.keys())
    ]
    for name, (args, keys) in SMOKE_RUNS.items():
        problem = run(name, args, keys)
        if problem:
            failures.append(f"bench/{name}: {problem}")
    for failure in failures:
        print(f"FAIL  {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""`make mutation`: mutmut on the crypto and audit core, each module against its own tests.

Coverage says a line ran; a surviving mutant says no test would notice that line broken. For
each module in MODULES this copies the project (the files git knows, committed or not) into
``var/mutation/<name>/``, configures mutmut there to mutate only that module and to run only
that module's tests, runs it on a database of its own (``neonpro_mut`` unless
MUTATION_DATABASE_URL says otherwise; the test database is reused between mutants, so each
mutant costs a test run, not a migration), and prints the score. Survivors and the reason
each may stand are listed in docs/testing.md.

Usage: ``python -m tests.mutation [module ...]`` (default: all of MODULES).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "var" / "mutation"
SOURCE_PATHS = ["keys", "neonpro", "patients", "records", "certificates", "imaging", "manage.py"]

MODULES: dict[str, list[str]] = {
    "keys/envelope.py": ["tests/keys/test_envelope.py"],
    "keys/crypto.py": ["tests/keys/test_crypto.py", "tests/keys/test_openers.py"],
    "keys/normalizers.py": ["tests/keys/test_normalizers.py"],
    "neonpro/audit/services.py": ["tests/audit/test_services.py"],
    "neonpro/security/rls.py": [
        "tests/rls/test_operations.py",
        "tests/rls/test_policies.py",
        "tests/rls/test_online_indexes.py",
        "tests/rls/test_planner_policies.py",
        # Compares agent_policies() with what the (reused, unmutated) test database installed.
        "tests/rls/test_agent_policies.py",
    ],
}

# Not mutated: lines that carry no behaviour (mutmut already skips docstrings and annotations).
DO_NOT_MUTATE_PATTERNS: list[str] = []


def _copy_project(target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.splitlines()
    for name in listed:
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _configure(target: Path, module: str, tests: list[str]) -> None:
    pyproject = (target / "pyproject.toml").read_text()
    tomllib.loads(pyproject)  # fail early on a broken file
    config = "\n".join(
        [
            "",
            "[tool.mutmut]",
            f"source_paths = {SOURCE_PATHS!r}",
            f"only_mutate = [{module!r}]",
            f"do_not_mutate_patterns = {DO_NOT_MUTATE_PATTERNS!r}",
            f"pytest_add_cli_args_test_selection = {tests!r}",
            # Fixed order, a reused test database, no coverage inside the mutant runs.
            'pytest_add_cli_args = ["-p", "no:randomly", "-p", "no:cacheprovider", "--reuse-db", "-q"]',
            "",
        ]
    )
    (target / "pyproject.toml").write_text(pyproject + config)


def _score(target: Path) -> tuple[int, int, list[str]]:
    """(killed, total, survivor names) from `mutmut results --all true`."""
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=target,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    statuses = [line.rsplit(":", 1) for line in out.splitlines() if ":" in line]
    counted = [(name.strip(), status.strip()) for name, status in statuses if status.strip() != "skipped"]
    survivors = [name for name, status in counted if status in ("survived", "no tests", "timeout", "suspicious")]
    killed = sum(1 for _, status in counted if status == "killed")
    return killed, len(counted), survivors


def _drop_test_database(url: str) -> None:
    """Start each module on a fresh test database, which its mutants then reuse."""
    import dj_database_url
    import psycopg
    from psycopg import sql

    db = dj_database_url.parse(url)
    dsn = f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} user={db['USER']} dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(f"test_{db['NAME']}")))


def run(module: str, tests: list[str], env: dict[str, str]) -> tuple[int, int, list[str]]:
    target = WORK / module.replace("/", "_").removesuffix(".py")
    _copy_project(target)
    _configure(target, module, tests)
    _drop_test_database(env["DATABASE_URL"])
    # One mutant at a time: the suite's tests share one database, and two concurrent runs
    # could fail each other's tests, counting a surviving mutant as killed.
    children = env.get("MUTATION_CHILDREN", "1")
    log = target / "mutmut-run.log"
    print(f"{module}: mutating, tests {' '.join(tests)} (log: {log.relative_to(ROOT)})", flush=True)
    with log.open("w") as out:
        subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", children],
            cwd=target,
            env=env,
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return _score(target)


def main(argv: list[str]) -> int:
    selected = argv or list(MODULES)
    env = {
        **os.environ,
        "DATABASE_URL": os.environ.get("MUTATION_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/neonpro_mut"),
        "REDIS_URL": os.environ.get("MUTATION_REDIS_URL", "redis://127.0.0.1:6379/4"),
    }
    env.pop("COVERAGE_PROCESS_CONFIG", None)
    # One master key for every process of the run (mutmut runs the suite in several).
    env["NEONPRO_TEST_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()
    scores = {}
    for module in selected:
        scores[module] = run(module, MODULES[module], env)
    print("\nmutation score per module (killed / mutants):")
    for module, (killed, total, survivors) in scores.items():
        percent = 100.0 * killed / total if total else 100.0
        print(f"  {module}: {percent:.1f}% ({killed}/{total})")
        where = (WORK / module.replace("/", "_").removesuffix(".py")).relative_to(ROOT)
        for name in survivors:
            print(f"    survived: {name}  (cd {where} && mutmut show {name})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The coverage policy `make test` enforces (see docs/testing.md).

Every file coverage measures must be 100% covered, lines and branches, unless it is listed in
NOT_YET_FULLY_COVERED. That list only shrinks: a listed file that reaches 100% fails the run
until it is taken off. TARGET_FULLY_COVERED names the files where a gap is a vulnerability
(the crypto and audit core); they may never move to the other list, and their mutants must
die as well (`make mutation`).

Run by `make test` after the data files are combined:
``python -m tests.coverage_policy enforce`` (full runs; fails on any breach) or
``python -m tests.coverage_policy report`` (a subset of the suite ran; only prints).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

TARGET_FULLY_COVERED = [
    "keys/crypto.py",
    "keys/envelope.py",
    "keys/normalizers.py",
    "neonpro/audit/services.py",
    "neonpro/security/rls.py",
]

# Measured files with known gaps (percentages as of the list's last change are in
# docs/testing.md). Take a file off as soon as it reaches 100%; never add one.
NOT_YET_FULLY_COVERED = [
    "keys/admin.py",
    "keys/checks.py",
    "keys/conf.py",
    "keys/djcrypto.py",
    "keys/exceptions.py",
    "keys/fields.py",
    "keys/keyring.py",
    "keys/management/commands/keys.py",
    "keys/migrate_in.py",
    "keys/models.py",
    "keys/providers/__init__.py",
    "keys/providers/aws_kms.py",
    "keys/providers/local.py",
    "keys/providers/pkcs11.py",
    "keys/reencrypt.py",
    "keys/rotation.py",
    "keys/services.py",
    "keys/subjects.py",
    "neonpro/audit/logging.py",
    "neonpro/security/checks.py",
    "neonpro/security/context.py",
    "neonpro/security/db.py",
    "neonpro/security/management/commands/db.py",
    "neonpro/security/management/commands/serve.py",
    "neonpro/security/middleware.py",
    "neonpro/security/views.py",
    "neonpro/settings.py",
    "patients/models.py",
    "patients/services.py",
    "records/models.py",
    "records/services.py",
]


def measure() -> dict[str, dict[str, int | float]]:
    """Per-file summary of the combined coverage data (the JSON report's ``summary``)."""
    import coverage

    cov = coverage.Coverage()
    cov.load()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coverage.json"
        cov.json_report(outfile=str(out))
        files = json.loads(out.read_text())["files"]
    return {name: data["summary"] for name, data in files.items()}


def full(summary: dict[str, int | float]) -> bool:
    return summary["missing_lines"] == 0 and summary["missing_branches"] == 0


def describe(name: str, summary: dict[str, int | float]) -> str:
    lines = f"{summary['covered_lines']}/{summary['num_statements']} lines"
    branches = f"{summary['covered_branches']}/{summary['num_branches']} branches"
    return f"{name}: {summary['percent_covered']:.1f}% ({lines}, {branches})"


def problems(measured: dict[str, dict[str, int | float]]) -> list[str]:
    found = []
    if set(TARGET_FULLY_COVERED) & set(NOT_YET_FULLY_COVERED):
        found.append("a file is on both lists: the crypto and audit core must stay fully covered")
    for name in TARGET_FULLY_COVERED:
        if name not in measured:
            found.append(f"{name}: on the enforced list but not measured (did it move? update the list)")
    for name in NOT_YET_FULLY_COVERED:
        if name in measured and full(measured[name]):
            found.append(f"{name}: now fully covered; take it off NOT_YET_FULLY_COVERED (the list only shrinks)")
    for name, summary in sorted(measured.items()):
        if name not in NOT_YET_FULLY_COVERED and not full(summary):
            found.append(f"{describe(name, summary)}: must be 100% (run `coverage report -m --include={name}`)")
    return found


def main(argv: list[str]) -> int:
    mode = argv[0] if argv else "enforce"
    measured = measure()
    print("coverage of the enforced core (line and branch):")
    for name in TARGET_FULLY_COVERED:
        print(f"  {describe(name, measured[name]) if name in measured else name + ': not measured'}")
    if mode == "report":
        print("coverage policy not enforced: only part of the suite ran")
        return 0
    found = problems(measured)
    for problem in found:
        print(f"COVERAGE POLICY: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

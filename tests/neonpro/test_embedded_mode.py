"""The embedded default (`make run`): SQLite, key file, demo data — encrypted and searchable too."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_embedded_mode_seeds_encrypted_searchable_patients(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "NEONPRO_MASTER_KEY", "NEONPRO_MASTER_KEY_FILE"}
    }
    env["NEONPRO_DATA_DIR"] = str(tmp_path)
    for step in (("keys", "create-master", "--if-missing"), ("migrate", "--noinput"), ("keys", "init")):
        result = _manage(*step, env=env)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600

    seeded = _manage("demo", "seed", env=env)
    assert seeded.returncode == 0, seeded.stderr
    assert "shown only now" in seeded.stdout
    again = _manage("demo", "seed", env=env)
    assert "already present" in again.stdout
    assert "admin " not in again.stdout, "passwords are printed once"

    lookup = _manage(
        "shell",
        "-c",
        "from patients.models import Patient; from neonpro.security.context import system_context\n"
        "print(Patient.objects.filter(ssn='900 12 0002').count())\n"
        "with system_context('test'):\n"
        "    p = Patient.objects.get(ssn='900 12 0002')\n"
        "    print(p.mrn, Patient.objects.filter(email__in=['ADA.DEMO@example.org']).count())",
        env=env,
    )
    assert lookup.returncode == 0, lookup.stderr
    lines = lookup.stdout.strip().splitlines()
    assert lines[-2] == "0", "without an identity the ORM shows no patient, even on SQLite"
    assert lines[-1] == "MRN-000102 1"

    with sqlite3.connect(tmp_path / "neonpro.sqlite3") as db:
        rows = db.execute("SELECT * FROM patients_patient").fetchall()
        assert len(rows) == 3
        dump = "\n".join(db.iterdump())
        raw = b"".join(v for row in rows for v in row if isinstance(v, bytes))
        try:
            db.execute(
                "UPDATE patients_patient SET full_name = CAST('plaintext name, long enough for the check' AS BLOB)"
            )
            refused = False
        except sqlite3.IntegrityError:
            refused = True
    for needle in ("Ada Demo", "Ben Sample", "900-12-0001", "ada.demo@example.org", "MRN-000101"):
        assert needle.encode() not in raw
        assert needle not in dump
        assert needle.encode().hex().upper() not in dump.upper()
    assert refused, "the CHECK constraint refuses non-envelope values on SQLite too"

    verify = _manage("keys", "verify", env=env)
    assert verify.returncode == 0, verify.stderr

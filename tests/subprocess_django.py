"""Running ``manage.py`` in a process of its own, e.g. on the embedded SQLite default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]


def manage(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    """``manage.py *args`` with ``env``; its stdout (asserting it succeeded)."""
    result = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def sqlite_env(folder: Path, master_key: str) -> dict[str, str]:
    """The environment of an embedded-mode process on a SQLite database in ``folder``, migrated
    and with its data keys (and static files: pages name their stylesheet by its manifest)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEONPRO_", "DJANGO_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=f"sqlite:///{folder / 'db.sqlite3'}",
        NEONPRO_DATA_DIR=str(folder),
        NEONPRO_MASTER_KEY=master_key,
        DJANGO_DEBUG="False",
    )
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "keys", "init")
    manage(env, "collectstatic", "--noinput", "-v", "0")
    return env

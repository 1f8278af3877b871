"""The app as its users reach it: ``manage.py serve`` in its own process, over TLS, on PostgreSQL.

``start_served_app`` clones the (migrated) test database into a database of its own, seeds
the demo accounts there with ``manage.py demo seed`` (as an operator would), and starts the
real TLS listener on a free port, connected as the application role — row-level security
in force, exactly as in production. Tests then talk to it over HTTPS (a browser, curl-like
clients); nothing is shared with the test process but the database server and Redis.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

BASE_DIR = Path(__file__).resolve().parents[1]
MANAGE = str(BASE_DIR / "manage.py")
STARTUP_TIMEOUT = 60.0
_CREDENTIAL = re.compile(
    r"^\s+(?P<username>\S+)\s+(?P<role>patient|clinician|admin|agent)\s+(?P<password>\S+)(?:\s+(?P<totp>[A-Z2-7]{16,}))?\s*$"
)


@dataclass
class ServedApp:
    url: str
    port: int
    cert: Path
    log: Path
    database: str
    env: dict[str, str]
    credentials: dict[str, str] = field(default_factory=dict)  # username -> password
    totp_secrets: dict[str, str] = field(default_factory=dict)  # username -> base32 authenticator secret
    process: subprocess.Popen[bytes] | None = None

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a management command against the served app's database, as an operator would."""
        return subprocess.run(
            [sys.executable, MANAGE, *args],
            env=self.env,
            cwd=BASE_DIR,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_credentials(output: str) -> dict[str, str]:
    """``username -> password`` from the account table ``demo seed`` / ``demo reset-passwords`` print."""
    return {username: password for username, (password, _) in _parse(output).items()}


def parse_totp_secrets(output: str) -> dict[str, str]:
    """``username -> base32 authenticator secret`` from the same table."""
    return {username: secret for username, (_, secret) in _parse(output).items() if secret}


def _parse(output: str) -> dict[str, tuple[str, str]]:
    found = {}
    for line in output.splitlines():
        match = _CREDENTIAL.match(line)
        if match:
            found[match["username"]] = (match["password"], match["totp"] or "")
    return found


_LAST_STEP: dict[str, int] = {}


def totp_code(secret: str, *, account: str = "") -> str:
    """A current code for a base32 ``secret``, as an authenticator app shows it — never one
    the server has accepted for ``account`` already (a code works once): the next time step's
    code when this step's was used (the server accepts one step ahead), and past that a wait
    for the clock's next step."""
    import base64

    from django_otp.oath import totp

    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    device = f"{account}:{secret}"  # one authenticator: the same account on another served app is another
    now = int(time.time()) // 30
    step = max(now, _LAST_STEP.get(device, -1) + 1)
    if step > now + 1:
        time.sleep((step - 1) * 30 - time.time() + 0.05)  # the clock itself is what is awaited
    _LAST_STEP[device] = step
    return f"{totp(key, step=30, digits=6, drift=step - int(time.time()) // 30):06d}"


def clone_database(admin_dsn: str, *, template: str, name: str, owner: str) -> None:
    """``CREATE DATABASE name TEMPLATE template``: the migrated schema, grants and RLS policies
    in a second or so. PostgreSQL refuses while anyone else is connected to the template, so
    the caller closes its own connections first; stragglers get a few retries."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for attempt in range(20):
            try:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" OWNER "{owner}"')
                return
            except psycopg.errors.ObjectInUse:
                if attempt == 19:
                    raise
                time.sleep(0.25)


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_served_app(
    *, data_dir: Path, database_url: str, database: str, redis_url: str, master_key: str, extra_env: dict[str, Any]
) -> ServedApp:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEONPRO_", "DJANGO_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="neonpro.settings",
        PYTHONUNBUFFERED="1",
        NEONPRO_DATA_DIR=str(data_dir),
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        NEONPRO_MASTER_KEY=master_key,
        # No worker runs beside this server: tasks run in the request, as in the embedded mode.
        CELERY_TASK_ALWAYS_EAGER="True",
    )
    env.update({k: str(v) for k, v in extra_env.items()})
    port = free_port()
    app = ServedApp(
        url=f"https://localhost:{port}",
        port=port,
        cert=data_dir / "tls" / "dev-cert.pem",
        log=data_dir / "serve.log",
        database=database,
        env=env,
    )
    collected = app.manage("collectstatic", "--noinput", "-v", "0")
    if collected.returncode != 0:
        raise RuntimeError(f"collectstatic failed:\n{collected.stderr}")
    seeded = app.manage("demo", "seed")
    if seeded.returncode != 0:
        raise RuntimeError(f"demo seed failed:\n{seeded.stdout}\n{seeded.stderr}")
    app.credentials = parse_credentials(seeded.stdout)
    app.totp_secrets = parse_totp_secrets(seeded.stdout)
    with app.log.open("wb") as out:
        app.process = subprocess.Popen(
            [sys.executable, MANAGE, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=BASE_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    _wait_until_listening(app)
    return app


def _wait_until_listening(app: ServedApp) -> None:
    assert app.process is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            raise RuntimeError(f"serve exited with {app.process.returncode}:\n{app.log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", app.port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"serve did not listen on {app.port} within {STARTUP_TIMEOUT:.0f}s:\n{app.log.read_text()}")


def stop(app: ServedApp) -> None:
    if app.process is None or app.process.poll() is not None:
        return
    app.process.terminate()
    try:
        app.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        app.process.kill()
        app.process.wait(timeout=15)


@contextmanager
def own_served_app(
    suffix: str,
    django_db_blocker: Any,
    tmp_path_factory: Any,
    *,
    extra_env: dict[str, Any] | None = None,
    tls_from: Path | None = None,
) -> Iterator[ServedApp]:
    """The real ``manage.py serve`` on a clone of the migrated test database of its own (named
    ``<test db>_<suffix>``), as the application role, with the demo data; dropped afterwards.
    ``tls_from``: a folder whose dev certificate and key it serves (a browser pinned to another
    served app's certificate then trusts this one too)."""
    import shutil

    from django.conf import settings
    from django.db import connections

    from tests.conftest import APP_ROLE, OWNER_ROLE, TEST_MASTER_KEY, superuser_dsn

    db = settings.DATABASES["default"]
    template = connections["default"].settings_dict["NAME"]
    name = f"{template}_{suffix}"
    with django_db_blocker.unblock():
        connections.close_all()
        clone_database(superuser_dsn(), template=template, name=name, owner=OWNER_ROLE)
    data_dir = tmp_path_factory.mktemp(suffix)
    if tls_from is not None:
        shutil.copytree(tls_from, data_dir / "tls")
    app = start_served_app(
        data_dir=data_dir,
        database_url=f"postgres://{APP_ROLE}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}",
        database=name,
        redis_url=settings.REDIS_URL,
        master_key=TEST_MASTER_KEY,
        extra_env=extra_env or {},
    )
    try:
        yield app
    finally:
        stop(app)
        drop_database(superuser_dsn(), name)

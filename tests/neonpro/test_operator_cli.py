"""What an operator types on the embedded install (`make run`'s database), and what they see."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from tests.conftest import sign_in_as
from tests.served import free_port, parse_credentials

BASE_DIR = Path(__file__).resolve().parents[2]
MANAGE = str(BASE_DIR / "manage.py")


class Install:
    def __init__(self, data_dir: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("NEONPRO_", "DJANGO_", "CELERY_"))}
        self.env.pop("DATABASE_URL", None)
        self.env.pop("REDIS_URL", None)
        self.env["NEONPRO_DATA_DIR"] = str(data_dir)

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, MANAGE, *args], env=self.env, cwd=BASE_DIR, capture_output=True, text=True, timeout=120
        )


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    site = Install(tmp_path_factory.mktemp("embedded"))
    for step in (("keys", "create-master", "--if-missing"), ("migrate", "--noinput", "-v", "0"), ("keys", "init")):
        result = site.manage(*step)
        assert result.returncode == 0, result.stderr
    seeded = site.manage("demo", "seed")
    assert seeded.returncode == 0, seeded.stderr
    site.first_passwords = parse_credentials(seeded.stdout)  # type: ignore[attr-defined]
    yield site


def _can_sign_in(site: Install, username: str, password: str) -> bool:
    check = site.manage(
        "shell",
        "-c",
        # (django-axes wants the request a password arrives with)
        "from django.contrib.auth import authenticate; from django.test import RequestFactory; "
        f"print(authenticate(RequestFactory().post('/accounts/login/'), username={username!r}, "
        f"password={password!r}) is not None)",
    )
    assert check.returncode == 0, check.stderr
    return check.stdout.strip().splitlines()[-1] == "True"


def test_lost_demo_passwords_can_be_replaced(install: Install) -> None:
    old = install.first_passwords  # type: ignore[attr-defined]
    assert set(old) == {"admin", "dr.house", "dr.grey", "patient.ada"}

    again = install.manage("demo", "seed")
    assert "demo reset-passwords" in again.stdout, "the way back in is named when seeding is skipped"
    reset = install.manage("demo", "reset-passwords")

    assert reset.returncode == 0, reset.stderr
    new = parse_credentials(reset.stdout)
    assert set(new) == set(old) and all(new[u] != old[u] for u in old)
    assert _can_sign_in(install, "dr.house", new["dr.house"])
    assert not _can_sign_in(install, "dr.house", old["dr.house"])
    events = install.manage("audit", "export")
    assert events.stdout.count('"action": "account.password_set"') == len(new)
    assert new["admin"] not in events.stdout


def test_db_check_explains_the_embedded_mode(install: Install) -> None:
    check = install.manage("db", "check")

    assert check.returncode == 0, check.stderr
    assert "no row-level security" in check.stdout and "scoped managers" in check.stdout
    roles = install.manage("db", "roles")
    assert roles.returncode == 1
    assert "needs PostgreSQL" in roles.stderr and "DATABASE_URL" in roles.stderr


def test_keys_status_labels_counts_as_reserved(install: Install) -> None:
    status = install.manage("keys", "status")

    assert status.returncode == 0, status.stderr
    assert "RESERVED*" in status.stdout and "upper bound" in status.stdout


def test_audit_export_into_a_closed_pipe_stops_quietly(install: Install) -> None:
    proc = subprocess.Popen(
        [sys.executable, MANAGE, "audit", "export"],
        env=install.env,
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line, as with `| head -0`
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


@pytest.mark.django_db
def test_admin_says_no_scheduler_runs_in_the_embedded_mode(settings: Any, user_factory: Any) -> None:
    admin_user = user_factory("admin", is_staff=True, is_superuser=True)
    client = Client()
    sign_in_as(client, admin_user)
    url = "/admin/django_celery_beat/periodictask/"

    settings.CELERY_TASK_ALWAYS_EAGER, settings.CELERY_BROKER_URL = True, "memory://"
    embedded = client.get(url, secure=True)
    settings.CELERY_TASK_ALWAYS_EAGER, settings.CELERY_BROKER_URL = False, "redis://127.0.0.1:6379/0"
    deployed = client.get(url, secure=True)

    assert embedded.status_code == deployed.status_code == 200
    assert "No scheduler runs in this installation" in embedded.content.decode()
    assert "No scheduler runs" not in deployed.content.decode()
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="keys.rotate_due_keys")
    settings.CELERY_TASK_ALWAYS_EAGER, settings.CELERY_BROKER_URL = True, "memory://"
    page = client.get(f"{url}{task.pk}/change/", secure=True)
    assert page.status_code == 200 and "No scheduler runs in this installation" in page.content.decode()
    settings.CELERY_TASK_ALWAYS_EAGER, settings.CELERY_BROKER_URL = False, "redis://127.0.0.1:6379/0"
    page = client.get(f"{url}{task.pk}/change/", secure=True)
    assert page.status_code == 200 and "No scheduler runs" not in page.content.decode()


def test_demo_run_refuses_to_serve_in_process() -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="must run as its own process"):
        call_command("demo", "run")


def _start(install: Install, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, MANAGE, *args],
        env=install.env,
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 60) -> list[str]:
    """Lines the process printed up to and including the first one containing ``marker``."""
    import queue
    import threading
    import time

    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()
    proc.lines, proc.reader = lines, reader  # type: ignore[attr-defined]  # _stop reads the rest
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01)).rstrip("\n")
        except queue.Empty:
            break
        seen.append(line)
        if marker in line:
            return seen
    proc.kill()
    pytest.fail(f"never printed {marker!r}:\n" + "\n".join(seen))


def _stop(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C, as an operator stops it; returns what it printed after the lines already read."""
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    proc.reader.join(timeout=10)  # type: ignore[attr-defined]
    rest = []
    while not proc.lines.empty():  # type: ignore[attr-defined]
        rest.append(proc.lines.get())  # type: ignore[attr-defined]
    return "".join(rest)


def test_demo_run_ends_its_start_up_output_with_how_to_sign_in(tmp_path_factory: pytest.TempPathFactory) -> None:
    site = Install(tmp_path_factory.mktemp("demo-run"))
    for step in (("keys", "create-master", "--if-missing"), ("migrate", "--noinput", "-v", "0")):
        assert site.manage(*step).returncode == 0
    port = free_port()

    first = _start(site, "demo", "run", "--port", str(port))
    lines = _read_until(first, "patient.ada")
    rest = _stop(first)

    listening = next(i for i, line in enumerate(lines) if "NeonPro is listening on" in line)
    assert f"https://localhost:{port}/" in lines[listening]
    after = "\n".join(lines[listening:])
    assert f"https://localhost:{port}/admin/" in after and "passwords shown only now" in after
    passwords = parse_credentials("\n".join(lines))
    assert set(passwords) == {"admin", "dr.house", "dr.grey", "patient.ada"}
    assert first.returncode == -signal.SIGINT
    assert "Finished server process" in rest and "Traceback" not in rest

    again = _start(site, "demo", "run", "--port", str(port))
    lines = _read_until(again, "demo reset-passwords")
    _stop(again)
    assert not parse_credentials("\n".join(lines)), "passwords are shown once"


def test_a_busy_port_is_named_with_the_way_out(install: Install) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = install.manage("serve", "--port", str(port))

    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert f"make run PORT={port + 1}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stdout


def test_demo_run_on_a_busy_port_still_shows_the_new_passwords(tmp_path_factory: pytest.TempPathFactory) -> None:
    site = Install(tmp_path_factory.mktemp("demo-busy"))
    for step in (("keys", "create-master", "--if-missing"), ("migrate", "--noinput", "-v", "0")):
        assert site.manage(*step).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = site.manage("demo", "run", "--port", str(taken.getsockname()[1]))

    assert result.returncode == 1
    assert "already in use" in result.stderr
    assert set(parse_credentials(result.stderr)) == {"admin", "dr.house", "dr.grey", "patient.ada"}

    with socket.socket() as taken:  # again: nothing new to show
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        again = site.manage("demo", "run", "--port", str(taken.getsockname()[1]))
    assert again.returncode == 1 and not parse_credentials(again.stderr)


def test_reset_passwords_without_demo_accounts_says_how_to_create_them(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    site = Install(tmp_path_factory.mktemp("no-demo"))
    for step in (("keys", "create-master", "--if-missing"), ("migrate", "--noinput", "-v", "0")):
        assert site.manage(*step).returncode == 0

    result = site.manage("demo", "reset-passwords")

    assert result.returncode == 1 and "demo seed" in result.stderr


def test_djangos_own_commands_name_the_os_account_as_operator(install: Install) -> None:
    import json

    from neonpro.audit.operator import os_user

    made = install.manage(
        "shell",
        "-c",
        "from neonpro.accounts.models import User; User.objects.create_user(username='dr.shell', role='clinician')",
    )
    assert made.returncode == 0, made.stderr

    events = [json.loads(line) for line in install.manage("audit", "export").stdout.splitlines()]
    created = [e for e in events if e["action"] == "account.create" and e["details"].get("role") == "clinician"]
    assert created[-1]["actor_role"] == "operator" and created[-1]["details"]["operator"] == os_user()


def test_demo_data_is_refused_in_production(install: Install) -> None:
    import secrets

    env = {**install.env, "NEONPRO_ENV": "production", "DJANGO_SECRET_KEY": secrets.token_urlsafe(64)}
    result = subprocess.run(
        [sys.executable, MANAGE, "demo", "reset-passwords"], env=env, cwd=BASE_DIR, capture_output=True, text=True
    )

    assert result.returncode == 1 and "refused with NEONPRO_ENV=production" in result.stderr

"""The real `manage.py serve` listener, started as a subprocess in embedded mode.

`serve_env` prepares one data directory (SQLite, local master key file, collected static files)
for the session; `server` is one listener on it for the session, shared by every module that
speaks to it; `start_serve` starts further listeners for tests that stop or break their own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
MANAGE = str(BASE_DIR / "manage.py")
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
# Variables that would pull the subprocess out of the embedded default (or pre-set its OpenSSL).
_STRIPPED_ENV = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "NEONPRO_ENV",
    "NEONPRO_MASTER_KEY",
    "NEONPRO_MASTER_KEY_FILE",
    "NEONPRO_TLS_DIR",
    "NEONPRO_TLS_CERT",
    "NEONPRO_TLS_KEY",
    "DJANGO_SECRET_KEY",
    "DJANGO_SECRET_KEY_FILE",
    "DJANGO_DEBUG",
    "DJANGO_ALLOWED_HOSTS",
    "DJANGO_SECURE_SSL_REDIRECT",
    "DJANGO_BEHIND_PROXY",
    "OPENSSL_CONF",
)


@dataclass(frozen=True)
class ServeEnv:
    env: dict[str, str]
    data_dir: Path


@dataclass(frozen=True)
class Server:
    port: int
    pid: int
    cert: Path
    log: Path


@dataclass(frozen=True)
class ServeProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


StartServe = Callable[..., ServeProcess]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _manage(*args: str, env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, MANAGE, *args], env=env, cwd=BASE_DIR, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


def wait_until_listening(serve: ServeProcess) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if serve.proc.poll() is not None:
            pytest.fail(f"serve exited with {serve.proc.returncode}:\n{serve.log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", serve.port), timeout=1):
                pass
        except OSError:
            time.sleep(0.1)
            continue
        # The socket is bound and listening before uvicorn runs (neonpro.security.listener), so a
        # connection is accepted early: uvicorn serves (and handles signals) once it says so.
        if "is listening on" in serve.log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    pytest.fail(f"serve did not listen on {serve.port} within {STARTUP_TIMEOUT:.0f}s:\n{serve.log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


@pytest.fixture(scope="session")
def serve_env(tmp_path_factory: pytest.TempPathFactory) -> ServeEnv:
    data_dir = tmp_path_factory.mktemp("neonpro-serve")
    env = {k: v for k, v in os.environ.items() if k not in _STRIPPED_ENV}
    env.update(
        NEONPRO_DATA_DIR=str(data_dir),
        DATABASE_URL=f"sqlite:///{data_dir / 'db.sqlite3'}",
        DJANGO_SETTINGS_MODULE="neonpro.settings",
        PYTHONUNBUFFERED="1",
    )
    _manage("keys", "create-master", "--if-missing", env=env)
    _manage("migrate", "--noinput", env=env)
    _manage("collectstatic", "--noinput", "-v", "0", env=env)
    return ServeEnv(env=env, data_dir=data_dir)


@pytest.fixture(scope="session")
def start_serve(serve_env: ServeEnv) -> Iterator[StartServe]:
    """Start `manage.py serve` (not waiting for it to listen); every process started is stopped at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*, port: int | None = None) -> ServeProcess:
        port = port or free_port()
        log = serve_env.data_dir / f"serve-{port}-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, MANAGE, "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=serve_env.env,
                cwd=BASE_DIR,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(proc)
        return ServeProcess(proc=proc, port=port, log=log)

    yield start
    for proc in started:
        stop(proc)


@pytest.fixture(scope="session")
def server(serve_env: ServeEnv, start_serve: StartServe) -> Server:
    serve = start_serve()
    wait_until_listening(serve)
    return Server(port=serve.port, pid=serve.proc.pid, cert=serve_env.data_dir / "tls" / "dev-cert.pem", log=serve.log)

"""`manage.py serve` as a process: the PID it was started as listens, pinned, and stops on signals.

`serve` re-executes itself with OPENSSL_CONF (neonpro.security.tls), so the process a
supervisor starts is the listener itself: its signals reach uvicorn and its exit status is
uvicorn's. The subprocesses here start without OPENSSL_CONF (conftest strips it).
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest

from neonpro.security.tls import OPENSSL_CONFIG
from tests.neonpro.conftest import STARTUP_TIMEOUT, STOP_TIMEOUT, Server, StartServe, wait_until_listening


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def _refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def test_the_started_pid_is_the_listener_and_runs_with_the_pinned_config(server: Server) -> None:
    assert _environ(server.pid).get("OPENSSL_CONF") == str(OPENSSL_CONFIG)
    cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
    assert b"serve" in cmdline


@pytest.mark.parametrize(
    ("signum", "returncode"),
    [
        # uvicorn shuts down, then re-raises the signal on itself: the caller sees death by that signal
        # (for SIGINT via KeyboardInterrupt, which Python turns into death by SIGINT).
        (signal.SIGTERM, -signal.SIGTERM),
        (signal.SIGINT, -signal.SIGINT),
    ],
)
def test_a_signal_to_the_started_pid_stops_the_listener_gracefully(
    start_serve: StartServe, signum: signal.Signals, returncode: int
) -> None:
    serve = start_serve()
    wait_until_listening(serve)

    serve.proc.send_signal(signum)

    assert serve.proc.wait(timeout=STOP_TIMEOUT) == returncode, serve.log.read_text()
    assert "Finished server process" in serve.log.read_text()
    assert _refuses_connections(serve.port)


def test_a_listener_that_cannot_start_exits_non_zero(start_serve: StartServe) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        serve = start_serve(port=taken.getsockname()[1])
        try:
            returncode = serve.proc.wait(timeout=STARTUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve kept running on a port that is taken:\n{serve.log.read_text()}")

    assert returncode != 0, serve.log.read_text()

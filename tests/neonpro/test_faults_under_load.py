"""Faults under load: no acknowledged write is lost, no write reported failed was committed,
every refusal is a JSON 503 with Retry-After, no request hangs, and the service is back within
2 s of each fault ending.

The production topology, small: uvicorn with two worker processes behind the proxy headers
(as docker/ runs it), pooled connections as the application role with row-level security in
force, on a clone of the migrated test database, its PostgreSQL behind a TCP proxy the test
can cut (tests/faults.py) and a Redis of its own (a private ``redis-server`` on a port of the
test's). Writers create records carrying a client-generated marker in their notes; readers
list patients and records. Meanwhile, one after the other:

(a) the database goes away. The machine's PostgreSQL is shared (other suites run on it), so
    it is not restarted: instead every backend of the server is ended with
    ``pg_terminate_backend`` (what a restart does to its sessions), then the proxy cuts every
    connection and refuses new ones for 4 s (what a restarting or unreachable server looks
    like to the app), then lets them through again;
(b) Redis is SIGKILLed, and restarted 2 s later;
(c) another session holds ``LOCK TABLE records_medicalrecord`` for 3 s, past ``lock_timeout``;
(d) one uvicorn worker is SIGKILLed (the supervisor starts another; requests in flight on it
    lose their connection: their outcome is unknown to the client, and is neither counted as
    acknowledged nor as refused).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings

from tests.conftest import APP_ROLE, OWNER_ROLE, TEST_MASTER_KEY, superuser_dsn
from tests.faults import CuttableProxy
from tests.served import (
    BASE_DIR,
    clone_database,
    drop_database,
    free_port,
    parse_credentials,
    parse_totp_secrets,
)

pytestmark = pytest.mark.django_db
LOCK_TIMEOUT_MS = 700
POOL_TIMEOUT_S = 2
ADMISSION_WAIT_S = 3
STATEMENT_TIMEOUT_MS = 3000
# The longest a request may take under any of these faults: the admission queue, then a pool
# checkout, then a statement (or a lock wait), plus a second of slack for a loaded machine.
REQUEST_BOUND_S = ADMISSION_WAIT_S + POOL_TIMEOUT_S + STATEMENT_TIMEOUT_MS / 1000 + 1
RECOVERY_S = 2.0
HOST = "localhost"
_COOKIE = re.compile(r"^\s*([^=;\s]+)=([^;]*)")
_CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class Client:
    """One keep-alive connection and a cookie jar, as the proxy (nginx) would forward."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None, **headers: str) -> tuple[int, Any, bytes]:
        sent = {"Host": HOST, "X-Forwarded-Proto": "https", "X-Forwarded-For": "127.0.0.1", **headers}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2 * REQUEST_BOUND_S)
        try:
            self.conn.request(method, path, body=body, headers=sent)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        for header in response.headers.get_all("Set-Cookie") or []:
            match = _COOKIE.match(header)
            if match:
                self.cookies[match[1]] = match[2]
        return response.status, response.headers, data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def api(self, method: str, path: str, payload: Any = None) -> tuple[int, Any, bytes]:
        if method == "GET":
            return self.request("GET", path, Accept="application/json")
        return self.request(
            method,
            path,
            json.dumps(payload).encode(),
            **{
                "Content-Type": "application/json",
                "X-CSRFToken": self.cookies.get("__Host-csrftoken", ""),
                "Referer": f"https://{HOST}/",
            },
        )

    def sign_in(self, username: str, password: str, totp_secret: str = "") -> None:
        _, _, page = self.request("GET", "/accounts/login/")
        token = _CSRF_INPUT.search(page.decode())
        assert token is not None
        form = f"username={username}&password={password}&csrfmiddlewaretoken={token[1]}".encode()
        status, _, body = self.request(
            "POST",
            "/accounts/login/",
            form,
            **{"Content-Type": "application/x-www-form-urlencoded", "Referer": f"https://{HOST}/accounts/login/"},
        )
        assert status == 302 and "__Host-sessionid" in self.cookies, body[:300]
        if totp_secret:  # the second step: a current code from the account's authenticator
            from tests.served import totp_code

            # The code first: totp_code may wait for the clock's next step, longer than the server
            # keeps an idle keep-alive connection open. Keyed by this app's secret: another served
            # app's dr.house is another authenticator.
            code = totp_code(totp_secret, account=f"{username}:{totp_secret}")
            _, _, page = self.request("GET", "/accounts/login/verify/")
            token = _CSRF_INPUT.search(page.decode())
            assert token is not None
            form = f"token={code}&csrfmiddlewaretoken={token[1]}".encode()
            status, _, body = self.request(
                "POST",
                "/accounts/login/verify/",
                form,
                **{
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Referer": f"https://{HOST}/accounts/login/verify/",
                },
            )
            assert status == 302, body[:300]


@dataclass
class Outcomes:
    lock: threading.Lock = field(default_factory=threading.Lock)
    acknowledged: set[str] = field(default_factory=set)  # 201: must exist afterwards
    refused: set[str] = field(default_factory=set)  # an answer other than 201: must not exist
    unknown: set[str] = field(default_factory=set)  # no answer (the worker died mid-request)
    statuses: list[tuple[float, float, str, int]] = field(default_factory=list)  # started, ended, kind, status
    bad_503s: list[str] = field(default_factory=list)
    slowest: float = 0.0

    def seen(self, kind: str, status: int, headers: Any, body: bytes, started: float) -> None:
        ended = time.monotonic()
        with self.lock:
            self.statuses.append((started, ended, kind, status))
            self.slowest = max(self.slowest, ended - started)
            if status == 503:
                ok = headers.get("Content-Type") == "application/json" and int(headers.get("Retry-After", 0)) >= 1
                if not ok or "error" not in json.loads(body or b"{}"):
                    self.bad_503s.append(f"{kind}: {headers.get('Content-Type')} {body[:100]!r}")


def _port(after: int = 0) -> int:
    """A free loopback port: within ``NEONPRO_TEST_PORTS`` (``low-high``) when a shared machine
    gives each suite a range, else any."""
    spec = os.environ.get("NEONPRO_TEST_PORTS", "")
    if not spec:
        return free_port()
    low, high = (int(part) for part in spec.split("-"))
    for port in range(max(low, after + 1), high + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {spec}")


def _redis(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_port(port, process)
    return process


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port} after {timeout:.0f} s")


def _workers(supervisor: int) -> list[int]:
    """The uvicorn worker processes (spawned children) of the supervisor."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


@dataclass
class Production:
    port: int
    process: subprocess.Popen[bytes]
    database: str
    proxy: CuttableProxy
    redis_port: int
    redis: subprocess.Popen[bytes]
    log: Path
    credentials: dict[str, str]
    totp_secrets: dict[str, str]


@pytest.fixture(scope="module")
def production(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Production]:
    from django.db import connections

    db = settings.DATABASES["default"]
    template = connections["default"].settings_dict["NAME"]
    name = f"{template}_faults"
    with django_db_blocker.unblock():
        connections.close_all()
        clone_database(superuser_dsn(), template=template, name=name, owner=OWNER_ROLE)
    proxy = CuttableProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
    redis_port = _port()
    redis = _redis(redis_port)
    data_dir = tmp_path_factory.mktemp("faults")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEONPRO_", "DJANGO_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="neonpro.settings",
        PYTHONUNBUFFERED="1",
        NEONPRO_DATA_DIR=str(data_dir),
        DATABASE_URL=f"postgres://{APP_ROLE}@127.0.0.1:{proxy.port}/{name}",
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        NEONPRO_MASTER_KEY=TEST_MASTER_KEY,
        CELERY_TASK_ALWAYS_EAGER="True",
        DJANGO_BEHIND_PROXY="True",
        DJANGO_ALLOWED_HOSTS=HOST,
        DJANGO_CSRF_TRUSTED_ORIGINS=f"https://{HOST}",
        WEB_CONCURRENCY="2",
        NEONPRO_DB_POOL_SIZE="4",
        NEONPRO_DB_POOL_AUX_SIZE="2",
        NEONPRO_DB_POOL_TIMEOUT=str(POOL_TIMEOUT_S),
        NEONPRO_ADMISSION_WAIT=str(ADMISSION_WAIT_S),
        NEONPRO_DB_LOCK_TIMEOUT_MS=str(LOCK_TIMEOUT_MS),
        NEONPRO_DB_STATEMENT_TIMEOUT_MS=str(STATEMENT_TIMEOUT_MS),
    )

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args], env=env, cwd=BASE_DIR, capture_output=True, text=True, check=False
        )

    assert manage("collectstatic", "--noinput", "-v", "0").returncode == 0
    seeded = manage("demo", "seed")
    assert seeded.returncode == 0, seeded.stderr
    port = _port(after=redis_port)
    log = data_dir / "server.log"
    command = [sys.executable, "-m", "uvicorn", "neonpro.asgi:application", "--host", "127.0.0.1", "--port"]
    command += [str(port), "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1", "--no-server-header"]
    command += ["--lifespan", "off"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=BASE_DIR, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, process)
        yield Production(
            port,
            process,
            name,
            proxy,
            redis_port,
            redis,
            log,
            parse_credentials(seeded.stdout),
            parse_totp_secrets(seeded.stdout),
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
        proxy.close()
        for r in (redis,):
            r.kill()
            r.wait(timeout=10)
        drop_database(superuser_dsn(), name)


def _wait_until_back(probe: Client, since: float, what: str, *, within: float = RECOVERY_S) -> float:
    """Seconds from ``since`` until ``what`` (and, for the API, the patient list) answer 200."""
    while True:
        try:
            ok = probe.api("GET", what)[0] == 200
            ok = ok and (not what.startswith("/api/") or probe.api("GET", "/api/v1/patients/")[0] == 200)
        except (OSError, http.client.HTTPException):
            ok = False
        elapsed = time.monotonic() - since
        if ok:
            return elapsed
        assert elapsed < within, f"{what} not back within {within} s of the fault ending"
        time.sleep(0.05)


def _first_success_after(outcomes: Outcomes, end: float, within: float = 10.0) -> float:
    """Seconds from ``end`` until the load's first success among the requests sent after it.

    Waits (at most ``within`` seconds) for one to complete: read at once, the requests sent after
    ``end`` may all still be in flight, which said "never" although the first one succeeded."""
    deadline = time.monotonic() + within
    while True:
        with outcomes.lock:
            done = [e for started, e, _, status in outcomes.statuses if started >= end and status in (200, 201)]
        if done or time.monotonic() > deadline:
            return min(done) - end if done else float("inf")
        time.sleep(0.05)


def _rows(app: Production, patient: str) -> int:
    """The patient's records, counted by a superuser (no row-level security, no pagination)."""
    with psycopg.connect(superuser_dsn(app.database)) as conn:
        row = conn.execute("SELECT count(*) FROM records_medicalrecord WHERE patient_id = %s", [patient]).fetchone()
    return int(row[0]) if row else 0


_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


def _all_notes(client: Client, path: str) -> list[str]:
    """The notes of every record the timeline lists, following its pages (``Link: rel="next"``)."""
    notes: list[str] = []
    path += ("&" if "?" in path else "?") + "page_size=200"
    while path:
        status, headers, body = client.api("GET", path)
        assert status == 200, body[:200]
        notes += [row["notes"] for row in json.loads(body)]
        following = _NEXT.search(headers.get("Link") or "")
        path = following[1].split(HOST, 1)[-1] if following else ""
    return notes


def _refused_during(outcomes: Outcomes, start: float, end: float) -> set[int]:
    return {status for _, at, _, status in outcomes.statuses if start <= at <= end and status not in (200, 201)}


def test_under_load_faults_lose_no_acknowledged_write_and_recover_within_two_seconds(production: Production) -> None:
    app = production
    password = app.credentials["dr.house"]
    probe = Client(app.port)
    probe.sign_in("dr.house", password, app.totp_secrets["dr.house"])
    patients = [p["id"] for p in json.loads(probe.api("GET", "/api/v1/patients/")[2])]
    records = f"/api/v1/patients/{patients[0]}/records/"
    rows_before = _rows(app, patients[0])
    outcomes, stop = Outcomes(), threading.Event()

    def signed_in() -> Client:  # the probe's session, on a connection of its own
        client = Client(app.port)
        client.cookies = dict(probe.cookies)
        return client

    def writer(n: int) -> None:
        client = signed_in()
        while not stop.is_set():
            marker = f"fault-{n}-{uuid.uuid4()}"
            started = time.monotonic()
            try:
                status, headers, body = client.api("POST", records, {"diagnosis": "Fault test", "notes": marker})
            except (OSError, http.client.HTTPException):
                with outcomes.lock:
                    outcomes.unknown.add(marker)
                continue
            outcomes.seen("write", status, headers, body, started)
            with outcomes.lock:
                (outcomes.acknowledged if status == 201 else outcomes.refused).add(marker)
            if status == 503:
                stop.wait(0.05)  # a client that backs off (briefly: the test wants many tries)

    def reader() -> None:
        client = signed_in()
        while not stop.is_set():
            for path in ("/api/v1/patients/", records):
                started = time.monotonic()
                try:
                    status, headers, body = client.api("GET", path)
                except (OSError, http.client.HTTPException):
                    continue
                outcomes.seen("read", status, headers, body, started)
                if status == 503:
                    stop.wait(0.05)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)] + [threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    recovery: dict[str, float] = {}
    windows: dict[str, tuple[float, float]] = {}
    try:
        stop.wait(1.0)  # steady load first

        # (a) the database: its sessions ended, then unreachable for 3 s.
        start = time.monotonic()
        with psycopg.connect(superuser_dsn(), autocommit=True) as admin:
            ended = admin.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND usename = %s",
                [app.database, APP_ROLE],
            ).fetchone()
        assert ended is not None and ended[0] >= 1
        app.proxy.cut()
        stop.wait(4.0)  # long enough for a doubling reconnection backoff to show (the pool's is steady)
        app.proxy.restore()
        end = time.monotonic()
        windows["database"] = (start, end)
        _wait_until_back(probe, end, records, within=10)
        recovery["database"] = _first_success_after(outcomes, end)

        # (b) Redis killed, back 2 s later on the same port.
        start = time.monotonic()
        app.redis.send_signal(signal.SIGKILL)
        app.redis.wait(timeout=10)
        stop.wait(2.0)
        app.redis = _redis(app.redis_port)
        end = time.monotonic()
        windows["redis"] = (start, end)
        recovery["redis"] = _wait_until_back(probe, end, "/healthz")  # not queued: probes skip admission

        # (c) a table lock held past lock_timeout.
        with psycopg.connect(superuser_dsn(app.database)) as locker:
            locker.execute("LOCK TABLE records_medicalrecord IN ACCESS EXCLUSIVE MODE")
            start = time.monotonic()
            stop.wait(3.0)
        end = time.monotonic()
        windows["lock"] = (start, end)
        _wait_until_back(probe, end, records, within=10)
        recovery["lock"] = _first_success_after(outcomes, end)

        # (d) one worker SIGKILLed.
        workers = _workers(app.process.pid)
        assert len(workers) == 2
        start = time.monotonic()
        os.kill(workers[0], signal.SIGKILL)
        windows["worker"] = (start, start)
        stop.wait(1.0)
        recovery["worker"] = _first_success_after(outcomes, start)
    finally:
        stop.set()
        for thread in threads:
            thread.join(2 * REQUEST_BOUND_S)

    # Every write the server acknowledged is there; none it refused is.
    probe.close()
    stored = {note for note in _all_notes(probe, records) if note.startswith("fault-")}
    added = _rows(app, patients[0]) - rows_before
    assert len(outcomes.acknowledged) <= added <= len(outcomes.acknowledged) + len(outcomes.unknown)
    assert outcomes.acknowledged, "no write succeeded at all"
    assert outcomes.acknowledged <= stored, f"{len(outcomes.acknowledged - stored)} acknowledged writes lost"
    assert not (outcomes.refused & stored), f"{len(outcomes.refused & stored)} refused writes were committed"
    assert stored <= outcomes.acknowledged | outcomes.unknown
    # Each fault was answered with JSON 503s carrying Retry-After (a refused request, never a 500).
    statuses = {status for _, _, _, status in outcomes.statuses}
    assert statuses <= {200, 201, 503}, statuses
    assert not outcomes.bad_503s, outcomes.bad_503s[:5]
    assert 503 in _refused_during(outcomes, *windows["database"])
    assert 503 in _refused_during(outcomes, *windows["lock"])
    # ... in bounded time, and the service came back within 2 s of each fault ending.
    assert outcomes.slowest < REQUEST_BOUND_S, outcomes.slowest
    assert all(seconds < RECOVERY_S for seconds in recovery.values()), recovery
    replaced_by = time.monotonic() + 15
    while len(_workers(app.process.pid)) < 2:  # the supervisor replaces the killed worker
        assert time.monotonic() < replaced_by, "the killed worker was not replaced"
        time.sleep(0.1)
    assert "Traceback" not in app.log.read_text()

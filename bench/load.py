"""200 signed-in clinicians at once: the production server under the clinical mix.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/neonpro REDIS_URL=redis://127.0.0.1:6379/10 \\
        python bench/load.py [--clients 10,50,200] [--duration 60] [--patients 2000] [--rush 200]

What runs: the production server as docker/ runs it (uvicorn, ``WEB_CONCURRENCY`` = the
machine's cores, ``--proxy-headers``, ``NEONPRO_ENV=production``, ``DJANGO_BEHIND_PROXY`` with
``X-Forwarded-Proto: https`` as nginx sends it, the default connection pools and admission
bound) on a unix socket (as nginx reaches it there), connected as ``neonpro_app`` with
row-level security in force, against a throw-away database ``neonpro_bench_load`` (recreated
each run) on the PostgreSQL of ``DATABASE_URL``, whose ``max_connections`` is left as it is (the default is 100).

Seeded (untimed, as the system identity): one clinician per client of the largest level, each
with a care team of ``--patients / clinicians`` patients holding ``--records`` records each.
Every clinician then signs in through the real form (GET the page, its CSRF cookie, POST the
password, then POST the code of its authenticator, enrolled at seeding), one
thread per client with its own cookie jar and keep-alive connection.

Measured, per client count: for ``--duration`` seconds every client loops over the five-endpoint
mix at random (list my patients, get a patient, list a patient's records, search by SSN (POST),
create a record), without think time; then, for as long, the baseline ``GET /api/v1/me/`` (the
cheapest authenticated request). Printed per level: rps, p50/p95/p99 per endpoint, errors by
status, the peak number of the bench database's connections (``pg_stat_activity`` sampled every
100 ms from a separate superuser connection), the configured pool total (workers x (default +
audit + keys pools)) and the mix's rps as a fraction of the baseline's.

``--rush N`` (default 200; 0 skips it): a sign-in rush during clinical load. 50 clients (or the
largest level below it) run the mix for ``--duration`` seconds alone (the baseline p99), then
again while N further clinicians sign in at once (each retrying after a 503 as its Retry-After
says); reported: clinical p99 during the rush against its baseline, how long the rush took,
and the sign-ins' 503s.

Targets (issue 16): 0 errors at 200 clients; peak connections <= pool total; fraction >= 0.5;
clinical p99 during the rush <= 2x its baseline. The last line is the JSON of every figure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchdb

BASE_DIR = Path(__file__).resolve().parents[1]
BENCH_DB = "neonpro_bench_load"
HOST = "localhost"  # the Host header nginx passes on (in ALLOWED_HOSTS below)
ORIGIN = f"https://{HOST}"
PASSWORD = "bench-load-password-" + "x" * 8  # synthetic accounts in a throw-away database
REDIS_URL = os.environ.get("REDIS_URL", "")
MIX = ("list_patients", "get_patient", "list_records", "search_ssn", "create_record")
REQUEST_TIMEOUT = 30.0
# Pool, admission and sign-in settings the operator sets for a run reach the server (benchdb
# turns pooling off for this process: it switches roles).
TUNING = {
    name: value
    for name, value in os.environ.items()
    if name.startswith(("NEONPRO_DB_POOL", "NEONPRO_MAX_IN_FLIGHT", "NEONPRO_ADMISSION", "NEONPRO_SIGNIN"))
}

benchdb.prepare(BENCH_DB, script="bench/load.py", drop=True)
os.environ["NEONPRO_MASTER_KEY"] = benchdb.master_key("load")

import django

django.setup()

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.db import connections

from neonpro.accounts.models import User
from neonpro.security.context import system_context
from patients.models import CareTeamMembership, Patient
from records.models import MedicalRecord


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- Seeding -------------------------------------------------------------------------------
def seed(clinicians: int, patients: int, records: int) -> list[dict[str, Any]]:
    """Users, patients, care teams and records (bulk, as the system); returns per clinician
    its username and its team's patient ids and SSNs."""
    rng = random.Random(16)
    encoded = make_password(PASSWORD)  # one real hash, shared: sign-ins pay the full cost
    team_size = max(1, patients // clinicians)
    people: list[dict[str, Any]] = []
    with system_context("bench/load.py seeding"):
        users = [
            User(id=uuid.uuid4(), username=f"clinician{c:04d}", password=encoded, role="clinician")
            for c in range(clinicians)
        ]
        User.objects.bulk_create(users, batch_size=1000)
        benchdb.enrol_totp(users)  # clinicians sign in with a second factor
        rows = [
            Patient(
                id=uuid.uuid4(),
                full_name=f"Bench Patient {i}",
                date_of_birth=f"19{40 + i % 60}-0{1 + i % 9}-1{i % 10}",
                ssn=benchdb.ssn_of(i),
                mrn=f"MRN-{i:08d}",
                email=f"patient{i}@example.org",
                phone=f"+1 555 {rng.randrange(10**7):07d}",
                address=f"{rng.randrange(1, 9999)} Bench Street, Springfield",
            )
            for i in range(clinicians * team_size)
        ]
        Patient.objects.bulk_create(rows, batch_size=1000)
        memberships, notes = [], []
        for c, user in enumerate(users):
            team = rows[c * team_size : (c + 1) * team_size]
            memberships += [CareTeamMembership(patient=p, clinician=user) for p in team]
            notes += [
                MedicalRecord(patient=p, provider=user, diagnosis="Hypertension", notes=f"Seeded visit {n}")
                for p in team
                for n in range(records)
            ]
            people.append(
                {
                    "username": user.username,
                    "patients": [str(p.pk) for p in team],
                    "ssns": [benchdb.ssn_of(c * team_size + k) for k in range(len(team))],
                }
            )
        CareTeamMembership.objects.bulk_create(memberships, batch_size=2000)
        MedicalRecord.objects.bulk_create(notes, batch_size=2000)
    with benchdb.owner() as conn:
        conn.execute("VACUUM (ANALYZE)")
    return people


# -- The server ----------------------------------------------------------------------------
class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the server's unix socket, as nginx reaches it in docker/."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


def server_env(data_dir: Path, workers: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEONPRO_", "DJANGO_", "CELERY_", "REDIS_"))}
    db = benchdb.SERVER
    env.update(
        DJANGO_SETTINGS_MODULE="neonpro.settings",
        PYTHONUNBUFFERED="1",
        NEONPRO_ENV="production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(48),
        DJANGO_DEBUG="False",
        DJANGO_BEHIND_PROXY="True",
        DJANGO_ALLOWED_HOSTS=HOST,
        DJANGO_CSRF_TRUSTED_ORIGINS=ORIGIN,
        NEONPRO_DATA_DIR=str(data_dir),
        NEONPRO_MASTER_KEY=benchdb.master_key("load"),
        DATABASE_URL=f"postgres://{benchdb.APP_ROLE}@{db['host']}:{db['port']}/{BENCH_DB}",
        NEONPRO_DB_APP_ROLE=benchdb.APP_ROLE,
        NEONPRO_DB_OWNER_ROLE=benchdb.OWNER_ROLE,
        # No worker runs beside this server: tasks run in the request.
        CELERY_TASK_ALWAYS_EAGER="True",
        # Each client loops without think time: the per-account API rate limit (1200/min) would
        # measure itself, not the server.
        NEONPRO_API_RATE_USER="off",
        WEB_CONCURRENCY=str(workers),  # what docker/Dockerfile sets, one per core
    )
    if REDIS_URL:
        env["REDIS_URL"] = REDIS_URL
    env.update(TUNING)
    return env


def pool_total(env: dict[str, str], workers: int) -> int:
    size = int(env.get("NEONPRO_DB_POOL_SIZE", settings.NEONPRO_DB_POOL_SIZE))
    aux = int(env.get("NEONPRO_DB_POOL_AUX_SIZE", settings.NEONPRO_DB_POOL_AUX_SIZE))
    if env.get("NEONPRO_DB_POOL", "True") != "True":
        return 0
    return workers * (size + 2 * aux)


def start_server(env: dict[str, str], address: str, log_path: Path) -> subprocess.Popen[bytes]:
    python = sys.executable
    collected = subprocess.run(  # noqa: S603
        [python, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if collected.returncode:
        sys.exit(f"collectstatic failed:\n{collected.stderr[-2000:]}")
    # docker/Dockerfile's command, on a unix socket as there (nginx's side of it is this process).
    # Not loopback TCP: uvicorn binds a multi-worker TCP socket itself with protocol 0, so asyncio
    # leaves Nagle's algorithm on and every response body waits ~40 ms for a delayed ACK.
    command = [
        python,
        "-m",
        "uvicorn",
        "neonpro.asgi:application",
        "--uds",
        address,
        "--proxy-headers",
        "--forwarded-allow-ips",
        "*",
        "--no-server-header",
        "--lifespan",
        "off",
        "--log-level",
        "warning",
    ]
    with log_path.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=BASE_DIR, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            status, _, _ = Client(address).request("GET", "/healthz")
            if status == 200:
                return process
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"the server did not answer within 60 s:\n{log_path.read_text()[-3000:]}")


# -- A client: one keep-alive connection, one cookie jar -----------------------------------
_COOKIE = re.compile(r"^\s*([^=;\s]+)=([^;]*)")
_CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class Client:
    def __init__(self, address: str) -> None:
        self.address = address
        self.cookies: dict[str, str] = {}
        self.conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        sent = {"Host": HOST, "X-Forwarded-Proto": "https", "X-Forwarded-For": "127.0.0.1", **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = UnixHTTPConnection(self.address, timeout=REQUEST_TIMEOUT)
            try:
                self.conn.request(method, path, body=body, headers=sent)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()  # a keep-alive connection the server closed: once more on a new one
                if attempt == 2:
                    raise
                continue
            for header in response.headers.get_all("Set-Cookie") or []:
                match = _COOKIE.match(header)
                if match:
                    self.cookies[match[1]] = match[2]
            if response.headers.get("Connection", "").lower() == "close":
                self.close()
            return response.status, response.headers, data
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def api(self, method: str, path: str, payload: Any = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        headers = {"Accept": "application/json"}
        body = None
        if method != "GET":
            body = json.dumps(payload).encode()
            headers.update(
                {
                    "Content-Type": "application/json",
                    "X-CSRFToken": self.cookies.get("__Host-csrftoken", ""),
                    "Referer": f"{ORIGIN}/",
                }
            )
        return self.request(method, path, body=body, headers=headers)

    def sign_in(self, username: str, give_up: float = 600.0) -> tuple[int, float, int]:
        """The form, as a browser fills it: (final status, seconds, 503s on the way). After a
        503 it comes back when Retry-After says, for at most ``give_up`` seconds in all."""
        started, refused = time.perf_counter(), 0
        while time.perf_counter() - started < give_up:
            status, headers, page = self.request("GET", "/accounts/login/")
            if status == 503:
                refused += 1
                time.sleep(float(headers.get("Retry-After", "1")))
                continue
            match = _CSRF_INPUT.search(page.decode(errors="replace"))
            if status != 200 or match is None:
                return status, time.perf_counter() - started, refused
            form = f"username={username}&password={PASSWORD}&csrfmiddlewaretoken={match[1]}".encode()
            status, headers, _ = self.request(
                "POST",
                "/accounts/login/",
                body=form,
                headers={"Content-Type": "application/x-www-form-urlencoded", "Referer": f"{ORIGIN}/accounts/login/"},
            )
            if status == 503:  # busy: come back when Retry-After says
                refused += 1
                time.sleep(float(headers.get("Retry-After", "1")))
                continue
            if status != 302 or headers.get("Location") != "/accounts/login/verify/":
                return status, time.perf_counter() - started, refused
            while time.perf_counter() - started < give_up:  # the second factor: the app's code
                code = f"token={benchdb.totp_now(username)}&csrfmiddlewaretoken={match[1]}".encode()
                status, headers, _ = self.request(
                    "POST",
                    "/accounts/login/verify/",
                    body=code,
                    headers={
                        "Content-Type": "application/x-www-form-urlencoded",
                        "Referer": f"{ORIGIN}/accounts/login/verify/",
                    },
                )
                if status != 503:
                    break
                refused += 1
                time.sleep(float(headers.get("Retry-After", "1")))
            ok = status == 302 and "__Host-sessionid" in self.cookies
            return (200 if ok else status), time.perf_counter() - started, refused
        return 503, time.perf_counter() - started, refused


# -- Load ----------------------------------------------------------------------------------
class Results:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: Counter[str] = Counter()
        self.count = 0

    def add(self, name: str, status: int, seconds: float, expected: int) -> None:
        with self.lock:
            self.count += 1
            self.latencies[name].append(seconds)
            if status != expected:
                self.errors[f"{name}:{status}"] += 1


def one_request(client: Client, who: dict[str, Any], name: str, rng: random.Random) -> tuple[int, int]:
    """(status, expected status) of one request of the mix (or of the baseline)."""
    k = rng.randrange(len(who["patients"]))
    patient = who["patients"][k]
    if name == "me":
        return client.api("GET", "/api/v1/me/")[0], 200
    if name == "list_patients":
        return client.api("GET", "/api/v1/patients/")[0], 200
    if name == "get_patient":
        return client.api("GET", f"/api/v1/patients/{patient}/")[0], 200
    if name == "list_records":
        return client.api("GET", f"/api/v1/patients/{patient}/records/")[0], 200
    if name == "search_ssn":
        return client.api("POST", "/api/v1/patients/search/", {"field": "ssn", "value": who["ssns"][k]})[0], 200
    payload = {"diagnosis": "Follow-up", "notes": f"Load visit {rng.randrange(10**9)}"}
    return client.api("POST", f"/api/v1/patients/{patient}/records/", payload)[0], 201


def drive(
    clients: list[tuple[Client, dict[str, Any]]], names: tuple[str, ...], seconds: float, stop: threading.Event | None
) -> tuple[Results, float]:
    """Every client loops until ``seconds`` have passed (and ``stop`` is set, when given)."""
    results = Results()
    begin = threading.Barrier(len(clients) + 1)
    deadline: list[float] = []

    def loop(client: Client, who: dict[str, Any], seed_: int) -> None:
        rng = random.Random(seed_)
        begin.wait()
        while time.perf_counter() < deadline[0] or (stop is not None and not stop.is_set()):
            name = rng.choice(names)
            started = time.perf_counter()
            try:
                status, expected = one_request(client, who, name, rng)
            except (OSError, http.client.HTTPException):
                status, expected = 0, 1
                client.close()
            results.add(name, status, time.perf_counter() - started, expected)

    threads = [threading.Thread(target=loop, args=(c, w, n), daemon=True) for n, (c, w) in enumerate(clients)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    deadline.append(started + seconds)
    begin.wait()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - started


class ConnectionSampler:
    """The bench database's connections in pg_stat_activity, every 100 ms, from a superuser
    connection to another database (so that it does not count itself)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        info = benchdb.conninfo(benchdb.SERVER["user"], "postgres")
        with psycopg.connect(**info, autocommit=True) as conn:
            while not self._stop.is_set():
                row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [BENCH_DB]).fetchone()
                self.peak = max(self.peak, int(row[0]) if row else 0)
                self._stop.wait(0.1)


def quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0}

    def at(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99)}


def summary(results: Results, seconds: float, peak: int) -> dict[str, Any]:
    every = [s for values in results.latencies.values() for s in values]
    return {
        "rps": round(results.count / seconds, 1),
        "requests": results.count,
        "errors": sum(results.errors.values()),
        "errors_by_status": dict(sorted(results.errors.items())),
        "peak_connections": peak,
        **quantiles(every),
        "endpoints": {name: {"n": len(v), **quantiles(v)} for name, v in sorted(results.latencies.items())},
    }


def sign_in_all(
    address: str, people: list[dict[str, Any]], give_up: float = 600.0
) -> tuple[list[Client], dict[str, Any]]:
    clients = [Client(address) for _ in people]
    outcomes: list[tuple[int, float, int]] = [(0, 0.0, 0)] * len(people)

    def one(n: int) -> None:
        try:
            outcomes[n] = clients[n].sign_in(people[n]["username"], give_up)
        except (OSError, http.client.HTTPException):
            outcomes[n] = (0, 0.0, 0)

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in range(len(people))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.perf_counter() - started
    failed = Counter(status for status, _, _ in outcomes if status != 200)
    return clients, {
        "sign_ins": len(people),
        "signed_in": sum(1 for status, _, _ in outcomes if status == 200),
        "seconds": round(took, 2),
        "per_s": round(sum(1 for status, _, _ in outcomes if status == 200) / took, 2) if took else 0.0,
        "failed_by_status": {str(k): v for k, v in sorted(failed.items())},
        "refused_503": sum(r for _, _, r in outcomes),
        **quantiles([s for status, s, _ in outcomes if status == 200]),
    }


def measure_level(address: str, clients: list[Client], people: list[dict[str, Any]], n: int, seconds: float) -> Any:
    pairs = list(zip(clients[:n], people[:n], strict=True))
    with ConnectionSampler() as sampler:
        mix, mix_s = drive(pairs, MIX, seconds, None)
    mix_figures = summary(mix, mix_s, sampler.peak)
    with ConnectionSampler() as sampler:
        base, base_s = drive(pairs, ("me",), seconds, None)
    base_figures = summary(base, base_s, sampler.peak)
    fraction = round(mix_figures["rps"] / base_figures["rps"], 3) if base_figures["rps"] else 0.0
    return {"clients": n, "mix": mix_figures, "baseline_me": base_figures, "fraction": fraction}


def measure_rush(
    address: str,
    clients: list[Client],
    people: list[dict[str, Any]],
    rushers: list[dict[str, Any]],
    n: int,
    s: float,
    give_up: float,
) -> dict[str, Any]:
    pairs = list(zip(clients[:n], people[:n], strict=True))
    with ConnectionSampler() as sampler:
        alone, alone_s = drive(pairs, MIX, s, None)
    before = summary(alone, alone_s, sampler.peak)
    done = threading.Event()
    rush: dict[str, Any] = {}

    def sign_ins() -> None:
        rush.update(sign_in_all(address, rushers, give_up)[1])
        done.set()

    with ConnectionSampler() as sampler:
        thread = threading.Thread(target=sign_ins, daemon=True)
        thread.start()
        during, during_s = drive(pairs, MIX, s, done)
        thread.join()
    after = summary(during, during_s, sampler.peak)
    ratio = round(after["p99_ms"] / before["p99_ms"], 2) if before["p99_ms"] else 0.0
    return {"clients": n, "baseline": before, "during_rush": after, "rush": rush, "p99_ratio": ratio}


def print_level(level: dict[str, Any]) -> None:
    for label in ("mix", "baseline_me"):
        figures = level[label]
        log(
            f"{level['clients']:>4} clients {label:<11} {figures['rps']:>7.1f} rps  p50 {figures['p50_ms']:>7.1f}  "
            f"p95 {figures['p95_ms']:>7.1f}  p99 {figures['p99_ms']:>7.1f} ms  errors {figures['errors']} "
            f"{figures['errors_by_status'] or ''}  peak connections {figures['peak_connections']}"
        )
        if label == "mix":
            for name, e in figures["endpoints"].items():
                log(
                    f"       {name:<14} n={e['n']:<6} p50 {e['p50_ms']:>7.1f}  p95 {e['p95_ms']:>7.1f}  "
                    f"p99 {e['p99_ms']:>7.1f} ms"
                )
    log(f"       mix rps / baseline rps = {level['fraction']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="10,50,200", help="comma-separated client counts")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per level and mode")
    parser.add_argument("--patients", type=int, default=2000, help="patients, spread over the care teams")
    parser.add_argument("--records", type=int, default=5, help="seeded records per patient")
    parser.add_argument("--rush", type=int, default=200, help="sign-ins of the rush (0: no rush)")
    parser.add_argument("--rush-clients", type=int, default=50, help="clinical clients during the rush")
    parser.add_argument("--rush-timeout", type=float, default=120.0, help="seconds a rushing sign-in keeps retrying")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="uvicorn workers (the cores)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    levels = [int(n) for n in args.clients.split(",") if n.strip()]
    rush_clients = min(args.rush_clients, max(levels))

    log(f"{BENCH_DB}: migrating and seeding {max(levels) + args.rush} clinicians, {args.patients} patients")
    call_command("migrate", verbosity=0)
    call_command("db", "identity-keys", verbosity=0, stdout=sys.stderr)
    benchdb.use_app_role()
    people = seed(max(levels) + args.rush, args.patients, args.records)
    connections.close_all()

    data_dir = Path(tempfile.mkdtemp(prefix="neonpro-load-"))
    env = server_env(data_dir, args.workers)
    address = str(data_dir / "web.sock")
    process = start_server(env, address, data_dir / "server.log")
    try:
        with psycopg.connect(**benchdb.conninfo(benchdb.SERVER["user"], "postgres"), autocommit=True) as conn:
            row = conn.execute("SHOW max_connections").fetchone()
        max_connections = int(row[0]) if row else 0
        total = pool_total(env, args.workers)
        log(f"server: {args.workers} workers, pool total {total}, PostgreSQL max_connections {max_connections}")
        clients, signin = sign_in_all(address, people[: max(levels)])
        log(f"signed in {signin['sign_ins']} clinicians in {signin['seconds']} s: {signin}")
        if signin["failed_by_status"]:
            sys.exit(f"sign-in failed: {signin['failed_by_status']}\n{(data_dir / 'server.log').read_text()[-3000:]}")
        figures: list[dict[str, Any]] = []
        for n in levels:
            level = measure_level(address, clients, people, n, args.duration)
            print_level(level)
            figures.append(level)
        rush = None
        if args.rush:
            rushers = people[max(levels) :]
            rush = measure_rush(address, clients, people, rushers, rush_clients, args.duration, args.rush_timeout)
            log(
                f"rush of {args.rush} sign-ins during {rush_clients} clients: clinical p99 "
                f"{rush['baseline']['p99_ms']} -> {rush['during_rush']['p99_ms']} ms (x{rush['p99_ratio']}), "
                f"errors {rush['during_rush']['errors']}, rush {rush['rush']}"
            )
        largest = figures[-1] if figures else None
        result = {
            "workers": args.workers,
            "pool_total": total,
            "max_connections": max_connections,
            "duration_s": args.duration,
            "patients": args.patients,
            "sign_in": signin,
            "levels": figures,
            "rush": rush,
            "errors_at_max": largest["mix"]["errors"] + largest["baseline_me"]["errors"] if largest else None,
            "peak_connections": max(
                [max(f["mix"]["peak_connections"], f["baseline_me"]["peak_connections"]) for f in figures] or [0]
            ),
            "fraction_at_max": largest["fraction"] if largest else None,
            "rush_p99_ratio": rush["p99_ratio"] if rush else None,
            "load_average": os.getloadavg()[0],
        }
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

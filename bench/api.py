"""The API under a clinician's workload, over TLS, and how much of the server's CPU is crypto.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/neonpro \\
        python bench/api.py [--clinicians 4] [--team 200] [--records 5] [--clients 4] [--duration 20]

What runs: the production TLS server, ``manage.py serve`` (uvicorn, TLS 1.3 only, one process,
``NEONPRO_ENV=production``, the default connection pools), connected as ``neonpro_app`` with
row-level security in force, against a throw-away database ``neonpro_bench_api`` (recreated
each run). The server is bench/api_server.py: ``manage.py serve`` with a CPU-time account of
the crypto core (``keys.crypto``'s encrypt, decrypt, blind index and MAC functions).

This process (the second one) signs the clinicians in through the real form (password, then
the code of an authenticator enrolled at seeding) and
drives the server over loopback TLS with one keep-alive connection each, without think time,
for ``--duration`` seconds per workload:

* ``list``: ``GET /api/v1/patients/?page_size=50`` (50 patients, every field decrypted);
* ``detail``: ``GET /api/v1/records/<id>/`` (one record of the clinician's care team);
* ``search``: ``POST /api/v1/patients/search/`` by SSN (a blind-index lookup, then decryption).

Printed: per workload rps, p50/p99 and errors, and the share of the server's CPU time (all its
threads, over the three workloads) spent in encryption, decryption and blind indexing
(``crypto_share``, target <= 0.10), with the MAC share (row seals, signed identities, the
audit chain) beside it. The last line is the JSON of every figure.
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
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchdb

BASE_DIR = Path(__file__).resolve().parents[1]
BENCH_DB = "neonpro_bench_api"
HOST = "localhost"
ORIGIN = f"https://{HOST}"
PASSWORD = "bench-api-password-" + "x" * 8  # synthetic accounts in a throw-away database
TARGET_CRYPTO_SHARE = 0.10
REQUEST_TIMEOUT = 30.0

benchdb.prepare(BENCH_DB, script="bench/api.py", drop=True)
os.environ["NEONPRO_MASTER_KEY"] = benchdb.master_key("api")

import django

django.setup()

from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.db import connections

from neonpro.accounts.models import User
from neonpro.security.context import system_context
from neonpro.security.tls import OPENSSL_CONFIG
from patients.models import CareTeamMembership, Patient
from records.models import MedicalRecord


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def seed(clinicians: int, team: int, records: int) -> list[dict[str, Any]]:
    """Clinicians, each with ``team`` patients of ``records`` records (bulk, as the system)."""
    rng = random.Random(9)
    encoded = make_password(PASSWORD)
    people: list[dict[str, Any]] = []
    with system_context("bench/api.py seeding"):
        users = [
            User(id=uuid.uuid4(), username=f"clinician{c:03d}", password=encoded, role="clinician")
            for c in range(clinicians)
        ]
        User.objects.bulk_create(users)
        benchdb.enrol_totp(users)  # clinicians sign in with a second factor
        for c, user in enumerate(users):
            patients = [
                Patient(
                    id=uuid.uuid4(),
                    full_name=f"Bench Patient {c}-{i}",
                    date_of_birth=f"19{40 + i % 60}-0{1 + i % 9}-1{i % 10}",
                    ssn=benchdb.ssn_of(c * team + i),
                    mrn=f"MRN-{c:03d}-{i:06d}",
                    email=f"patient{c}-{i}@example.org",
                    phone=f"+1 555 {rng.randrange(10**7):07d}",
                    address=f"{rng.randrange(1, 9999)} Bench Street, Springfield",
                )
                for i in range(team)
            ]
            Patient.objects.bulk_create(patients, batch_size=1000)
            CareTeamMembership.objects.bulk_create([CareTeamMembership(patient=p, clinician=user) for p in patients])
            notes = [
                MedicalRecord(
                    id=uuid.uuid4(),
                    patient=p,
                    provider=user,
                    diagnosis="Hypertension, essential",
                    treatment_plan="Lisinopril 10 mg daily; recheck in 4 weeks",
                    medications=["lisinopril 10 mg"],
                    notes=f"Seeded visit {n}: blood pressure 150/95, no end-organ damage.",
                )
                for p in patients
                for n in range(records)
            ]
            MedicalRecord.objects.bulk_create(notes, batch_size=2000)
            people.append(
                {
                    "username": user.username,
                    "records": [str(r.pk) for r in notes],
                    "ssns": [benchdb.ssn_of(c * team + i) for i in range(team)],
                }
            )
    with benchdb.owner() as conn:
        conn.execute("VACUUM (ANALYZE)")
    return people


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(data_dir: Path, profile_out: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEONPRO_", "DJANGO_", "CELERY_", "REDIS_"))}
    db = benchdb.SERVER
    env.update(
        DJANGO_SETTINGS_MODULE="neonpro.settings",
        PYTHONUNBUFFERED="1",
        OPENSSL_CONF=str(OPENSSL_CONFIG),  # what `manage.py serve` re-executes itself with
        NEONPRO_ENV="production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(48),
        DJANGO_DEBUG="False",
        DJANGO_ALLOWED_HOSTS=HOST,
        DJANGO_CSRF_TRUSTED_ORIGINS=ORIGIN,
        NEONPRO_DATA_DIR=str(data_dir),
        NEONPRO_TLS_DIR=str(data_dir / "tls"),
        NEONPRO_MASTER_KEY=benchdb.master_key("api"),
        DATABASE_URL=f"postgres://{benchdb.APP_ROLE}@{db['host']}:{db['port']}/{BENCH_DB}",
        NEONPRO_DB_APP_ROLE=benchdb.APP_ROLE,
        NEONPRO_DB_OWNER_ROLE=benchdb.OWNER_ROLE,
        CELERY_TASK_ALWAYS_EAGER="True",
        # Each client loops without think time: the per-account API rate limit (1200/min) would
        # measure itself, not the server.
        NEONPRO_API_RATE_USER="off",
        NEONPRO_BENCH_PROFILE_OUT=str(profile_out),
    )
    return env


class Client:
    """One clinician: a keep-alive TLS connection and a cookie jar."""

    _COOKIE = re.compile(r"^\s*([^=;\s]+)=([^;]*)")
    _CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self.port, self.context = port, context
        self.cookies: dict[str, str] = {}
        self.conn: http.client.HTTPSConnection | None = None

    def request(
        self, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        sent = {"Host": HOST, **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(
                    "127.0.0.1", self.port, timeout=REQUEST_TIMEOUT, context=self.context
                )
            try:
                self.conn.request(method, path, body=body, headers=sent)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 2:
                    raise
                continue
            for header in response.headers.get_all("Set-Cookie") or []:
                match = self._COOKIE.match(header)
                if match:
                    self.cookies[match[1]] = match[2]
            return response.status, response.headers, data
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def api(self, method: str, path: str, payload: Any = None) -> int:
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
        status, _, _ = self.request(method, path, body=body, headers=headers)
        return status

    def sign_in(self, username: str) -> None:
        status, _, page = self.request("GET", "/accounts/login/")
        match = self._CSRF_INPUT.search(page.decode(errors="replace"))
        if status != 200 or match is None:
            sys.exit(f"the sign-in page answered {status}")
        form = f"username={username}&password={PASSWORD}&csrfmiddlewaretoken={match[1]}".encode()
        status, _, _ = self.request(
            "POST",
            "/accounts/login/",
            body=form,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Referer": f"{ORIGIN}/accounts/login/"},
        )
        if status != 302:
            sys.exit(f"the password step of {username} answered {status}")
        code = f"token={benchdb.totp_now(username)}&csrfmiddlewaretoken={match[1]}".encode()
        status, _, _ = self.request(
            "POST",
            "/accounts/login/verify/",
            body=code,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Referer": f"{ORIGIN}/accounts/login/verify/",
            },
        )
        if status != 302 or "__Host-sessionid" not in self.cookies:
            sys.exit(f"sign-in of {username} failed with {status}")


def start_server(env: dict[str, str], port: int, log_path: Path, context: ssl.SSLContext) -> subprocess.Popen[bytes]:
    python = sys.executable
    collected = subprocess.run(  # noqa: S603 - our own command
        [python, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if collected.returncode:
        sys.exit(f"collectstatic failed:\n{collected.stderr[-2000:]}")
    command = [python, "bench/api_server.py", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=BASE_DIR, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        if b"is listening on" in log_path.read_bytes():
            return process
        time.sleep(0.2)
    sys.exit(f"the server did not start within 90 s:\n{log_path.read_text()[-3000:]}")


def drive(clients: list[Client], people: list[dict[str, Any]], workload: str, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def loop(client: Client, who: dict[str, Any], seed: int) -> None:
        rng = random.Random(seed)
        mine: list[float] = []
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            if workload == "list":
                status = client.api("GET", "/api/v1/patients/?page_size=50")
            elif workload == "detail":
                status = client.api("GET", f"/api/v1/records/{rng.choice(who['records'])}/")
            else:
                query = {"field": "ssn", "value": rng.choice(who["ssns"])}
                status = client.api("POST", "/api/v1/patients/search/", query)
            mine.append(time.perf_counter() - started)
            if status != 200:
                with lock:
                    errors[str(status)] = errors.get(str(status), 0) + 1
        with lock:
            latencies.extend(mine)

    pairs = enumerate(zip(clients, people, strict=True))
    threads = [threading.Thread(target=loop, args=(client, who, n)) for n, (client, who) in pairs]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()

    def quantile(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2) if latencies else 0.0

    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": quantile(0.50),
        "p99_ms": quantile(0.99),
        "errors": sum(errors.values()),
        "errors_by_status": errors,
    }


def profile(process: subprocess.Popen[bytes], out: Path) -> dict[str, Any]:
    out.unlink(missing_ok=True)
    process.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while not out.exists():
        if time.monotonic() > deadline:
            sys.exit("the server did not write its profile")
        time.sleep(0.05)
    figures: dict[str, Any] = json.loads(out.read_text())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clinicians", type=int, default=4, help="clinicians (and clients, one each)")
    parser.add_argument("--team", type=int, default=200, help="patients per clinician's care team")
    parser.add_argument("--records", type=int, default=5, help="records per patient")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per workload")
    parser.add_argument("--warmup", type=float, default=3.0, help="untimed seconds of each workload first")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    log(f"{BENCH_DB}: migrating and seeding {args.clinicians} clinicians x {args.team} patients x {args.records}")
    call_command("migrate", verbosity=0)
    call_command("db", "identity-keys", verbosity=0, stdout=sys.stderr)
    benchdb.use_app_role()
    people = seed(args.clinicians, args.team, args.records)
    connections.close_all()

    data_dir = Path(tempfile.mkdtemp(prefix="neonpro-api-"))
    profile_out = data_dir / "profile.json"
    env = server_env(data_dir, profile_out)
    port = free_port()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server's own development certificate, made for this run
    process = start_server(env, port, data_dir / "server.log", context)
    try:
        clients = [Client(port, context) for _ in people]
        for client, who in zip(clients, people, strict=True):
            client.sign_in(who["username"])
        workloads: dict[str, Any] = {}
        process.send_signal(signal.SIGUSR1)
        cpu = {"process_cpu_s": 0.0, "cpu_s": {}, "calls": {}}
        for name in ("list", "detail", "search"):
            if args.warmup:
                drive(clients, people, name, args.warmup)
            process.send_signal(signal.SIGUSR1)
            workloads[name] = drive(clients, people, name, args.duration)
            window = profile(process, profile_out)
            workloads[name]["server_cpu_s"] = window["process_cpu_s"]
            workloads[name]["crypto_cpu_s"] = window["cpu_s"]
            cpu["process_cpu_s"] += window["process_cpu_s"]
            for group, value in window["cpu_s"].items():
                cpu["cpu_s"][group] = cpu["cpu_s"].get(group, 0.0) + value
            for group, value in window["calls"].items():
                cpu["calls"][group] = cpu["calls"].get(group, 0) + value
            w = workloads[name]
            log(f"{name}: {w['rps']} rps, p50 {w['p50_ms']} ms, p99 {w['p99_ms']} ms, errors {w['errors_by_status']}")
        total = cpu["process_cpu_s"] or 1.0
        crypto_s = sum(cpu["cpu_s"].get(group, 0.0) for group in ("encryption", "decryption", "blind_index"))
        result = {
            "rps_list": workloads["list"]["rps"],
            "rps_detail": workloads["detail"]["rps"],
            "p99_ms_detail": workloads["detail"]["p99_ms"],
            "rps_search": workloads["search"]["rps"],
            "p99_ms_list": workloads["list"]["p99_ms"],
            "p99_ms_search": workloads["search"]["p99_ms"],
            "errors": sum(w["errors"] for w in workloads.values()),
            "crypto_share": round(crypto_s / total, 4),
            "mac_share": round(cpu["cpu_s"].get("mac", 0.0) / total, 4),
            "crypto_share_by_group": {group: round(v / total, 4) for group, v in cpu["cpu_s"].items()},
            "crypto_calls": cpu["calls"],
            "server_cpu_s": round(total, 2),
            "target_crypto_share": TARGET_CRYPTO_SHARE,
            "clients": len(clients),
            "duration_s": args.duration,
            "workloads": workloads,
            "load_average": os.getloadavg()[0],
        }
        log(
            f"crypto_share {result['crypto_share']} (target <= {TARGET_CRYPTO_SHARE}), mac_share {result['mac_share']},"
            f" server CPU {result['server_cpu_s']} s"
        )
        for client in clients:
            client.close()
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

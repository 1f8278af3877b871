"""The key lifecycle under real operations (issue 18, items 1-4 and 12): a second process
that cached a key, shredded keys met by re-encryption, overlapping jobs, racing rotations,
and the confirmations irreversible commands ask for.

Tests with separate processes commit what they seed (through ``in_thread``) and write
nothing in their own transaction, so the processes never wait for the test."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from io import StringIO
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from keys import keyring as keyring_module
from keys import rotation
from keys.exceptions import AuthenticationError, KeysError
from keys.keyring import keyring, reserve_encryptions
from keys.models import DataKey, ReencryptionJob
from keys.reencrypt import reencrypt
from keys.rotation import count_key_usage, destroy_data_key, retire_data_key, rotate_data_key
from neonpro.audit.models import AuditEvent
from patients.models import Patient
from tests.conftest import APP_ROLE, TEST_MASTER_KEY, in_thread

pytestmark = pytest.mark.django_db
BASE_DIR = Path(__file__).resolve().parents[2]


# -- helpers --------------------------------------------------------------------------


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    settings = connection.settings_dict
    host, port = settings["HOST"] or "127.0.0.1", settings["PORT"] or 5432
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        DATABASE_URL=f"postgres://{APP_ROLE}@{host}:{port}/{settings['NAME']}",
        NEONPRO_MASTER_KEY=TEST_MASTER_KEY,
        NEONPRO_DATA_DIR=str(tmp_path),
        **extra,
    )
    return env


def _dsn() -> str:
    settings = connection.settings_dict
    host, port = settings["HOST"] or "127.0.0.1", settings["PORT"] or 5432
    return f"host={host} port={port} user={APP_ROLE} dbname={settings['NAME']}"


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "keys", *args],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _proc(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.keys.lifecycle_procs", *args],
        env=env,
        cwd=BASE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _answer(proc: subprocess.Popen[str]) -> Any:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail(f"the process ended early: {proc.communicate()[1][-3000:]}")
    return json.loads(line) if line.startswith("{") else line.strip()


def _tell(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def _system(fn: Any) -> Any:
    """Run ``fn`` as the system on connections of its own (committed, as another process)."""

    def run() -> Any:
        from neonpro.security.context import system_context

        keyring.clear()
        with system_context("lifecycle test"):
            return fn()

    return in_thread(run, timeout=300)


def _active_id(purpose: str = "field") -> int:
    return _system(lambda: DataKey.objects.get(purpose=purpose, status="active").pk)  # type: ignore[no-any-return]


def _after_quiet_period(key_id: int) -> dt.datetime:
    allowed = rotation.settled_at(DataKey.objects.get(pk=key_id))
    assert allowed is not None
    return allowed + dt.timedelta(seconds=1)


# -- item 1: a process holding a rotated key ---------------------------------------------


def test_reserving_encryptions_is_refused_for_a_key_that_is_not_active(system: Any) -> None:
    old = rotate_data_key("field")
    assert reserve_encryptions(old.pk, "field") > 0
    rotate_data_key("field")
    with pytest.raises(keyring_module.KeyNotActiveError, match=f"data key {old.pk} is not the active field key"):
        reserve_encryptions(old.pk, "field")


def test_a_second_process_never_writes_under_a_rotated_then_destroyed_key(tmp_path: Path) -> None:
    """The outside review's steps: the second process keeps its cached key, the operator
    rotates, re-encrypts, retires and destroys; the process's next write must be readable."""
    operator = _env(tmp_path)
    # Blocks of one encryption: every value reserves, as a busy process does once its block runs out.
    writer = _proc("writer", "1", env=_env(tmp_path, NEONPRO_KEY_CACHE_TTL="300"))
    try:
        assert _answer(writer) == "ready"
        _tell(writer, "write Before Rotation")
        old = _answer(writer)["key"]
        assert old == _active_id()

        assert _manage("rotate", "--purpose", "field", env=operator).returncode == 0
        assert _manage("reencrypt", env=operator).returncode == 0
        usage = _manage("usage", str(old), env=operator)
        assert "0 values in total" in usage.stdout, usage.stderr
        for step in (("retire", str(old)), ("destroy", str(old), "--yes", "--confirm", str(old))):
            refused = _manage(*step, env=operator)
            assert refused.returncode != 0, f"{step[0]} must wait for the processes that cached the key"
            assert "NEONPRO_KEY_CACHE_TTL" in refused.stderr and "allowed from" in refused.stderr, refused.stderr
        assert _system(lambda: DataKey.objects.get(pk=old).status) == "decrypt_only"

        def retire_and_destroy_later() -> None:
            later = _after_quiet_period(old)
            retire_data_key(DataKey.objects.get(pk=old), now=later)
            destroy_data_key(DataKey.objects.get(pk=old), confirm=old, now=later)

        _system(retire_and_destroy_later)  # the clock past the quiet period
        _tell(writer, "write After Destroy")
        after = _answer(writer)
    finally:
        if writer.stdin:
            writer.stdin.close()
        writer.wait(30)
    assert after["key"] == _active_id() != old, "the reservation under the old key was refused and the process reloaded"
    assert _system(lambda: Patient.objects.get(pk=after["pk"]).full_name) == "After Destroy"
    assert _system(lambda: count_key_usage(DataKey.objects.get(pk=old))) == {}


def test_retire_and_destroy_wait_for_the_key_cache_and_the_longest_transaction(settings: Any, system: Any) -> None:
    settings.NEONPRO_KEY_CACHE_TTL, settings.NEONPRO_KEY_MAX_TRANSACTION_SECONDS = 300, 120
    old = rotate_data_key("field")
    rotate_data_key("field", now=dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC))
    old.refresh_from_db()
    assert rotation.settled_at(old) == dt.datetime(2026, 12, 1, 12, 7, tzinfo=dt.UTC)
    early = dt.datetime(2026, 12, 1, 12, 6, 30, tzinfo=dt.UTC)
    with pytest.raises(KeysError, match=r"retiring it is allowed from 2026-12-01 12:07:00 UTC \(in 31 s\)"):
        retire_data_key(old, now=early)
    with pytest.raises(KeysError, match=r"destroying it is allowed from 2026-12-01 12:07:00 UTC"):
        destroy_data_key(old, confirm=old.pk, now=early)
    retire_data_key(old, now=dt.datetime(2026, 12, 1, 12, 7, tzinfo=dt.UTC))
    assert old.status == "retired"
    settings.NEONPRO_KEY_MAX_TRANSACTION_SECONDS = -1
    with pytest.raises(KeysError, match="cannot be negative"):
        rotation.settled_at(old)


def test_a_key_that_never_encrypted_has_no_quiet_period(system: Any) -> None:
    from keys.services import create_data_key

    spare = create_data_key("field", activate=False)
    assert rotation.settled_at(spare) is None
    DataKey.objects.filter(pk=spare.pk).update(activated_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    spare.refresh_from_db()
    with pytest.raises(KeysError, match="no record of when it left service"):
        retire_data_key(spare)


# -- item 2: re-encryption after a crypto-shred -----------------------------------------


def test_reencryption_after_a_crypto_shred_skips_counts_and_finishes(patient_factory: Any, system: Any) -> None:
    first = rotate_data_key("field")
    shredded = [patient_factory(full_name=f"Shredded {i}") for i in range(2)]
    second = rotate_data_key("field")
    first.refresh_from_db()
    lost = sum(count_key_usage(first).values())
    assert lost >= 14  # 7 encrypted fields each
    destroy_data_key(first, confirm=first.pk, crypto_shred=True, now=_after_quiet_period(first.pk))
    kept = [patient_factory(full_name=f"Kept {i}") for i in range(3)]
    rotate_data_key("field")
    in_patients = sum(
        count
        for key in DataKey.objects.filter(purpose="field", status="destroyed")
        for name, count in count_key_usage(key).items()
        if name.startswith("patients.Patient.")
    )

    out, err = StringIO(), StringIO()
    call_command("keys", "reencrypt", stdout=out, stderr=err)

    job = ReencryptionJob.objects.filter(model="patients.Patient").order_by("-started_at").first()
    assert job is not None and job.status == "done" and not job.error
    assert job.values_unreadable == in_patients >= 14
    assert f"{job.values_unreadable} under destroyed keys skipped" in out.getvalue()
    event = AuditEvent.objects.filter(action="key.reencrypt_done").order_by("-id").first()
    assert event is not None and event.details["values_unreadable"] >= lost
    second.refresh_from_db()
    assert count_key_usage(second) == {}
    retire_data_key(second, now=_after_quiet_period(second.pk))  # the key rotated away from retires
    keyring.clear()
    assert [Patient.objects.get(pk=p.pk).full_name for p in kept] == ["Kept 0", "Kept 1", "Kept 2"]
    assert sum(count_key_usage(first).values()) == lost, "the shredded values stay where they were, unreadable"
    assert shredded


def test_a_failed_job_records_its_error_and_is_audited(patient_factory: Any, system: Any) -> None:
    patient = patient_factory(full_name="Tampered")
    rotate_data_key("field")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE patients_patient SET full_name = overlay(full_name placing '\\xff'::bytea from 40 for 1) "
            "WHERE id = %s",
            [patient.pk],
        )
    start = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    with pytest.raises(CommandError, match="cannot decrypt"):
        call_command("keys", "reencrypt", stdout=StringIO(), stderr=StringIO())
    job = ReencryptionJob.objects.filter(model="patients.Patient").order_by("-started_at").first()
    assert job is not None and job.status == "failed" and job.finished_at
    assert job.error.startswith("AuthenticationError: cannot decrypt") and "Tampered" not in job.error
    event = AuditEvent.objects.get(id__gt=start, action="key.reencrypt_failed")
    assert event.outcome == "error" and event.details["model"] == "patients.Patient"
    assert event.details["error"] == "AuthenticationError"
    with pytest.raises(AuthenticationError):
        reencrypt("field")  # a rerun starts a new job, which fails the same way
    assert not ReencryptionJob.objects.filter(status="running", model="patients.Patient").exists()


def test_errors_that_may_carry_values_are_named_by_their_type_only(system: Any) -> None:
    from keys.reencrypt import _fail

    job = ReencryptionJob.objects.create(purpose="field", model="tests.Nothing", target_key_id=1)
    _fail(job, ValueError("a value 900-55-0001"))
    job.refresh_from_db()
    assert (job.status, job.error) == ("failed", "ValueError (see the log)")


# -- item 3: overlapping re-encryption jobs ---------------------------------------------


def test_an_overtaken_worker_stops_and_never_moves_values_back(tmp_path: Path) -> None:
    tag = f"OVL-{uuid.uuid4().hex[:6]}"

    def seed() -> list[str]:
        patients = [
            Patient(full_name=f"{tag} {i}", date_of_birth=dt.date(1970, 1, 1), mrn=f"{tag}-{i}") for i in range(300)
        ]
        Patient.objects.bulk_create(patients)
        rotate_data_key("field")  # B: every value is now under an old key
        return [str(p.pk) for p in patients]

    ids = _system(seed)
    target_b = _active_id()
    worker1 = _proc("reencrypt", "50", env=_env(tmp_path, NEONPRO_KEY_CACHE_TTL="600"))
    try:
        paused = _answer(worker1)
        assert paused["target"] == target_b, paused
        target_c = _system(lambda: rotate_data_key("field").pk)
        second = _manage("reencrypt", env=_env(tmp_path))
        assert second.returncode == 0, second.stderr[-2000:]
        _tell(worker1, "go on")
        result = _answer(worker1)
        assert worker1.wait(120) == 0
    finally:
        if worker1.poll() is None:
            worker1.kill()
    patient_jobs = [job for job in result["jobs"] if job["model"] == "patients.Patient"]
    assert patient_jobs and patient_jobs[0]["status"] == "failed", result
    assert "superseded" in patient_jobs[0]["error"]

    with psycopg.connect(_dsn(), autocommit=True) as conn:
        statuses = conn.execute(
            "SELECT status, error FROM keys_reencryptionjob WHERE model = 'patients.Patient' AND target_key_id = %s",
            [target_b],
        ).fetchall()
    assert statuses and all(status == "failed" and "superseded" in error for status, error in statuses), statuses

    def check() -> tuple[dict[str, int], set[str]]:
        names = {p.full_name for p in Patient.objects.filter(pk__in=ids)}
        return count_key_usage(DataKey.objects.get(pk=target_b)), names

    usage_b, names = _system(check)
    assert usage_b == {}, "the overtaken worker moved values back to its old target"
    assert names == {f"{tag} {i}" for i in range(300)}
    assert _active_id() == target_c


def test_a_worker_finding_its_target_rotated_away_stops_without_done(patient_factory: Any, system: Any) -> None:
    patient_factory()
    rotate_data_key("field")
    jobs = reencrypt("field", batch=1, max_batches=1)
    job = jobs[-1]
    assert job.status == "running"
    rotate_data_key("field")
    from keys.reencrypt import _still_current

    assert _still_current(job) is False
    job.refresh_from_db()
    assert job.status == "failed" and "superseded: the active field key is key" in job.error


# -- item 4: concurrent rotations -------------------------------------------------------


def _rotate_four(env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    command = [sys.executable, str(BASE_DIR / "manage.py"), "keys", "rotate", "--purpose", "field"]
    procs = [
        subprocess.Popen(command, env=env, cwd=BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


ROTATE_LOCK, FIELD_INDEX = 0x4E50_4B52, 0  # keys.rotation's advisory lock of field-key rotations


def test_concurrent_rotations_are_serialised_and_the_losers_told(tmp_path: Path) -> None:
    from keys.keyring import ensure_active_datakey

    env = _env(tmp_path)
    before = _system(lambda: ensure_active_datakey("field").pk)
    count_before = _system(lambda: DataKey.objects.filter(purpose="field").count())
    with psycopg.connect(_dsn(), autocommit=True) as holder:
        # Another rotation in progress (an HSM wrap can take seconds): it holds the lock.
        holder.execute("SELECT pg_advisory_lock(%s::integer, %s::integer)", [ROTATE_LOCK, FIELD_INDEX])
        held = _rotate_four(env)
        holder.execute("SELECT pg_advisory_unlock_all()")
    for result in held:
        assert result.returncode == 1, result.stderr[-2000:]
        assert "another rotation of the field key is in progress; nothing was changed" in result.stderr
        assert "Traceback" not in result.stderr and "IntegrityError" not in result.stderr
    assert _active_id() == before
    assert _system(lambda: DataKey.objects.filter(purpose="field").count()) == count_before

    raced = _rotate_four(env)
    winners = [r for r in raced if r.returncode == 0]
    for result in raced:
        assert "Traceback" not in result.stderr and "IntegrityError" not in result.stderr, result.stderr[-2000:]
        if result.returncode:
            assert "nothing was changed" in result.stderr
    assert winners
    assert _system(lambda: DataKey.objects.filter(purpose="field").count()) == count_before + len(winners)
    assert _system(lambda: DataKey.objects.filter(purpose="field", status="active").count()) == 1
    denied = _system(lambda: AuditEvent.objects.filter(action="key.rotate", outcome="denied").count())
    assert denied >= 4
    assert (rotation.ROTATE_LOCK, DataKey.Purpose.values.index("field")) == (ROTATE_LOCK, FIELD_INDEX)


def test_rotation_still_works_in_the_embedded_sqlite_mode(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "NEONPRO_MASTER_KEY", "NEONPRO_MASTER_KEY_FILE"}
    }
    env["NEONPRO_DATA_DIR"] = str(tmp_path)
    for step in (("create-master",), ("init",), ("rotate", "--purpose", "field")):
        if step == ("init",):
            migrated = subprocess.run(
                [sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--noinput"],
                env=env,
                cwd=BASE_DIR,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert migrated.returncode == 0, migrated.stderr[-2000:]
        result = _manage(*step, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
    assert "field: new active key" in result.stdout


# -- item 12: irreversible commands -----------------------------------------------------


def _run(*args: str) -> str:
    out = StringIO()
    call_command("keys", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def shreddable(patient_factory: Any, system: Any, settings: Any) -> DataKey:
    """A decrypt-only field key past its quiet period with one patient's values under it."""
    settings.NEONPRO_KEY_CACHE_TTL, settings.NEONPRO_KEY_MAX_TRANSACTION_SECONDS = 1, 1
    old = rotate_data_key("field")
    patient_factory(full_name="Under The Old Key")
    rotate_data_key("field", now=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10))
    old.refresh_from_db()
    return old


def test_destroy_needs_the_key_id_restated_and_every_refusal_is_audited(shreddable: DataKey) -> None:
    key = str(shreddable.pk)
    start = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    for args, message in (
        ((key, "--crypto-shred"), f"pass --yes --confirm {key}"),
        ((key, "--crypto-shred", "--yes"), f"pass --yes --confirm {key}"),
        ((key, "--crypto-shred", "--confirm", key), f"pass --yes --confirm {key}"),
        ((key, "--crypto-shred", "--yes", "--confirm", str(shreddable.pk + 1)), f"got {shreddable.pk + 1}"),
        ((key, "--yes", "--confirm", key), "still protects 7 values"),
    ):
        with pytest.raises(CommandError, match=message):
            _run("destroy", *args)
    shreddable.refresh_from_db()
    assert shreddable.status == "decrypt_only" and bytes(shreddable.wrapped_key)
    refusals = AuditEvent.objects.filter(id__gt=start, action="key.destroy", outcome="denied")
    assert refusals.count() == 5
    assert all(event.details["key_id"] == shreddable.pk and event.details["refused"] for event in refusals)
    assert "Under The Old Key" not in json.dumps([e.details for e in refusals])

    out = _run("destroy", key, "--crypto-shred", "--yes", "--confirm", key)
    assert "7 values it protected are now unreadable" in out
    event = AuditEvent.objects.filter(action="key.destroy", outcome="success").order_by("-id").first()
    assert event is not None and event.details["values_shredded"] == 7 and event.details["crypto_shred"] is True


def test_destroy_can_be_confirmed_at_an_interactive_prompt(shreddable: DataKey, monkeypatch: Any) -> None:
    class Terminal(StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal("999999\n"))
    with pytest.raises(CommandError, match="got 999999"):
        _run("destroy", str(shreddable.pk), "--crypto-shred")
    monkeypatch.setattr(sys, "stdin", Terminal(f"{shreddable.pk}\n"))
    out = _run("destroy", str(shreddable.pk), "--crypto-shred")
    assert "Type its id to confirm" in out and "destroyed" in out


def test_destroy_dry_run_counts_without_changing_anything(shreddable: DataKey) -> None:
    out = _run("destroy", str(shreddable.pk), "--crypto-shred", "--dry-run")
    assert "patients.Patient.full_name" in out and "7 values in total" in out
    assert "dry run, nothing changed" in out and "would be allowed" in out
    assert "Under The Old Key" not in out
    out = _run("destroy", str(shreddable.pk), "--dry-run")
    assert "would be refused: data key" in out and "still protects 7 values" in out
    shreddable.refresh_from_db()
    assert shreddable.status == "decrypt_only" and bytes(shreddable.wrapped_key)


def test_rotate_due_respects_the_purpose(system: Any, settings: Any) -> None:
    for purpose in ("field", "index", "session"):
        rotate_data_key(purpose)
    settings.NEONPRO_KEY_ROTATION = {p: {"max_age_days": 0} for p in ("field", "index", "session")}
    before = {p: _active_here(p) for p in ("field", "index", "session")}
    out = _run("rotate", "--purpose", "field", "--due")
    assert "field: new active key" in out and "index:" not in out and "session:" not in out
    assert _active_here("field") != before["field"]
    assert (_active_here("index"), _active_here("session")) == (before["index"], before["session"])


def _active_here(purpose: str) -> int:
    return DataKey.objects.get(purpose=purpose, status="active").pk


@pytest.mark.parametrize("purpose", ["file", "session", "audit", "identity"])
def test_usage_cannot_count_some_purposes_and_retire_destroy_refuse_them(
    purpose: str, system: Any, settings: Any
) -> None:
    settings.NEONPRO_KEY_CACHE_TTL, settings.NEONPRO_KEY_MAX_TRANSACTION_SECONDS = 1, 1
    old = rotate_data_key(purpose)
    rotate_data_key(purpose, now=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10))
    key = str(old.pk)
    with pytest.raises(CommandError, match=f"cannot count the values under data key {key}"):
        _run("usage", key)
    with pytest.raises(CommandError, match=r"cannot count.*refusing to retire it.*--uncounted"):
        _run("retire", key)
    with pytest.raises(CommandError, match=r"cannot count.*refusing to destroy it"):
        _run("destroy", key, "--yes", "--confirm", key)
    assert "cannot be counted" in _run("destroy", key, "--dry-run")
    old.refresh_from_db()
    assert old.status == "decrypt_only"
    assert "its values cannot be counted (--uncounted)" in _run("retire", key, "--uncounted")
    assert "destroyed" in _run("destroy", key, "--uncounted", "--yes", "--confirm", key)
    assert rotation.plan_destroy(DataKey.objects.get(pk=old.pk)).refusal == f"data key {key} is already destroyed"

"""``audit checkpoint`` anchors the chain outside the database; ``audit verify --checkpoint``
proves the chain up to it was not rewritten or truncated, and refuses a forged file.

Driven as an operator runs them: ``call_command`` inside the test's transaction (on a
temporary, empty chain where the test may also play the attacker), and ``manage.py`` in a
subprocess on an embedded install.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from keys.crypto import sign
from neonpro.audit.models import AuditEvent
from neonpro.audit.operator import ticket_fingerprint, ticket_fingerprints
from neonpro.audit.services import (
    CHAIN_LABEL,
    ChainReport,
    CheckpointError,
    link_bytes,
    make_checkpoint,
    read_checkpoint,
    record_event,
)

pytestmark = pytest.mark.django_db
BASE_DIR = Path(__file__).resolve().parents[2]
OPERATOR = ["--operator", "ops.alice", "--reason", "audit", "--ticket", "CHG-42"]


@pytest.fixture
def empty_chain() -> Iterator[None]:
    """A temporary, empty audit table (no append-only trigger: the test plays the DBA)."""
    with connections["audit"].cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE audit_auditevent (LIKE public.audit_auditevent INCLUDING ALL)")
    yield
    with connections["audit"].cursor() as cursor:
        cursor.execute("DROP TABLE pg_temp.audit_auditevent")


def _audit(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("audit", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _checkpoint(tmp_path: Path, name: str = "head.json") -> tuple[Path, dict[str, Any]]:
    path = tmp_path / name
    _, err = _audit("checkpoint", "--out", str(path), *OPERATOR)
    assert f"written to {path}" in err
    return path, json.loads(path.read_text())


@pytest.mark.usefixtures("empty_chain")
def test_a_checkpoint_is_a_signed_head_and_its_making_is_audited(tmp_path: Path) -> None:
    events = [record_event("audit_test.checkpoint", details={"n": n}) for n in range(3)]
    path, head = _checkpoint(tmp_path)
    assert set(head) == {"format", "count", "last_id", "last_hash", "created_at", "key_id", "signature"}
    assert (head["count"], head["last_id"], head["last_hash"]) == (3, events[-1].pk, bytes(events[-1].hash).hex())
    assert head["format"] == "neonpro-audit-checkpoint-v1" and len(head["signature"]) == 64

    made = AuditEvent.objects.get(action="audit.checkpoint")
    assert made.actor_role == "operator"
    assert made.details == {
        "operator": "ops.alice",
        "reason": "audit",
        "ticket_fingerprint": ticket_fingerprint("CHG-42"),
        "count": 3,
        "last_id": events[-1].pk,
        "head": head["last_hash"],
        "key_id": head["key_id"],
    }
    record_event("audit_test.after_checkpoint")
    out, _ = _audit("verify", "--checkpoint", str(path), *OPERATOR)
    assert f"Matches the checkpoint of {head['created_at']}: 3 events up to event {events[-1].pk}." in out
    assert out.strip().endswith("Audit chain intact: 5 events verified.")


@pytest.mark.usefixtures("empty_chain")
def test_without_out_the_checkpoint_goes_to_standard_output() -> None:
    record_event("audit_test.checkpoint")
    out, _ = _audit("checkpoint")
    assert read_checkpoint(out).count == 1


@pytest.mark.usefixtures("empty_chain")
def test_a_truncated_chain_verifies_alone_but_not_against_its_checkpoint(tmp_path: Path) -> None:
    events = [record_event("audit_test.truncate", details={"n": n}) for n in range(3)]
    path, _ = _checkpoint(tmp_path)
    with connections["audit"].cursor() as cursor:  # the DBA deletes the tail, checkpoint event included
        cursor.execute("DELETE FROM pg_temp.audit_auditevent WHERE id >= %s", [events[-1].pk])
    assert "Audit chain intact: 2 events verified." in _audit("verify")[0]  # the chain alone cannot tell
    with pytest.raises(CommandError, match=rf"the checkpoint's last event {events[-1].pk} is missing: .*truncated"):
        _audit("verify", "--checkpoint", str(path))


@pytest.mark.usefixtures("empty_chain")
def test_a_consistent_rewrite_before_the_checkpoint_is_detected(tmp_path: Path) -> None:
    """Someone holding the audit key rewrites the last checkpointed event and re-signs it and
    everything after it: the chain alone verifies, the operator's checkpoint does not."""
    for n in range(2):
        record_event("audit_test.rewrite", details={"n": n})
    path, head = _checkpoint(tmp_path)
    rows = list(AuditEvent.objects.filter(id__gte=head["last_id"]).order_by("id"))
    previous = bytes(rows[0].prev_hash)
    with connections["audit"].cursor() as cursor:
        for row in rows:
            row.outcome = "denied" if row.pk == head["last_id"] else row.outcome
            row.prev_hash = previous
            row.hash = sign(link_bytes(row), purpose="audit", label=CHAIN_LABEL)[1]
            cursor.execute(
                "UPDATE pg_temp.audit_auditevent SET outcome = %s, prev_hash = %s, hash = %s WHERE id = %s",
                [row.outcome, row.prev_hash, row.hash, row.pk],
            )
            previous = bytes(row.hash)
    assert "Audit chain intact" in _audit("verify")[0]
    with pytest.raises(CommandError, match=rf"event {head['last_id']}: the chain up to it is not the one checkpointed"):
        _audit("verify", "--checkpoint", str(path))


def _write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.mark.usefixtures("empty_chain")
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"count": 99}, "signature does not verify: the file was altered or forged"),
        ({"last_hash": "00" * 32}, "signature does not verify"),
        ({"created_at": "2020-01-01T00:00:00+00:00"}, "signature does not verify"),
        ({"signature": "00" * 32}, "signature does not verify"),
        ({"key_id": 999999}, "or audit key 999999 was destroyed"),
        ({"count": True}, "incomplete or malformed"),
        ({"last_id": "7"}, "incomplete or malformed"),
        ({"created_at": 7}, "incomplete or malformed"),
        ({"signature": "zz"}, "incomplete or malformed"),
        ({"format": "something-else"}, "not a NeonPro audit checkpoint"),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, dict) else None,
)
def test_a_forged_or_broken_checkpoint_file_is_refused(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    record_event("audit_test.checkpoint")
    path, head = _checkpoint(tmp_path)
    _write(path, {**head, **change})
    with pytest.raises(CommandError, match=f"checkpoint {path}: .*{message}"):
        _audit("verify", "--checkpoint", str(path))


def test_unreadable_and_malformed_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"cannot read checkpoint .*missing.json: No such file"):
        _audit("verify", "--checkpoint", str(tmp_path / "missing.json"))
    with pytest.raises(CommandError, match=r"not a checkpoint file \(not JSON\)"):
        _audit("verify", "--checkpoint", str(_write(tmp_path / "a.json", "{nope")))
    with pytest.raises(CommandError, match="not a NeonPro audit checkpoint"):
        _audit("verify", "--checkpoint", str(_write(tmp_path / "b.json", [1, 2])))
    with pytest.raises(CommandError, match="incomplete or malformed"):
        _audit("verify", "--checkpoint", str(_write(tmp_path / "c.json", {"format": "neonpro-audit-checkpoint-v1"})))
    binary = tmp_path / "d.json"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(CommandError, match=r"checkpoint .*d.json: "):
        _audit("verify", "--checkpoint", str(binary))


@pytest.mark.usefixtures("empty_chain")
def test_a_checkpoint_is_never_overwritten_nor_made_of_a_broken_or_empty_chain(tmp_path: Path) -> None:
    existing = _write(tmp_path / "kept.json", "operator's copy")
    with pytest.raises(CommandError, match="exists: a checkpoint is never overwritten"):
        _audit("checkpoint", "--out", str(existing))
    assert existing.read_text() == "operator's copy"
    with pytest.raises(CommandError, match="only an intact chain with at least one event"):
        _audit("checkpoint")
    with pytest.raises(CheckpointError, match="only an intact chain"):
        make_checkpoint(ChainReport(problems=["broken"], last_id=1))
    record_event("audit_test.checkpoint")
    with connections["audit"].cursor() as cursor:
        cursor.execute("UPDATE pg_temp.audit_auditevent SET outcome = 'denied'")
    with pytest.raises(CommandError, match="audit chain broken, not checkpointed: event "):
        _audit("checkpoint", "--out", str(tmp_path / "new.json"))
    assert not (tmp_path / "new.json").exists()


def test_audit_commands_refuse_bad_operator_values() -> None:
    with pytest.raises(CommandError, match="--operator must be an account name"):
        _audit("verify", "--operator", "ops alice")
    with pytest.raises(CommandError, match="--ticket must not be empty"):
        _audit("export", "--since", "2999-01-01", "--ticket", " ")


def test_exports_are_audited_under_the_operator() -> None:
    _audit("export", "--since", "2999-01-01", *OPERATOR)
    made = AuditEvent.objects.filter(action="audit.export").latest("id")
    assert made.actor_role == "operator"
    assert made.details == {
        "operator": "ops.alice",
        "reason": "audit",
        "ticket_fingerprint": ticket_fingerprint("chg-42 "),
        "bounded": True,
    }


def test_an_export_that_cannot_be_audited_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("neonpro.audit.services._next_id", lambda alias: -5)
    out = io.StringIO()
    with pytest.raises(CommandError, match="audit log unavailable"):
        call_command("audit", "export", stdout=out)
    assert out.getvalue() == ""


# -- ticket fingerprints survive rotations ---------------------------------------------------------


def test_ticket_fingerprint_prints_what_events_record_under_every_audit_key() -> None:
    from keys.rotation import rotate_data_key

    before = ticket_fingerprint("CHG-42")
    rotate_data_key("index")  # the index key is not what fingerprints use
    assert ticket_fingerprint("CHG-42") == before
    rotate_data_key("audit")
    after = ticket_fingerprint("CHG-42")
    assert after != before and after[:8] != before[:8]  # 4 bytes of key id lead
    out, _ = _audit("ticket-fingerprint", " chg-42")
    lines = out.strip().splitlines()
    assert lines[0] == f"{after}  audit key {int(after[:8], 16)} (active)"
    assert f"{before}  audit key {int(before[:8], 16)}" in lines[1:]
    assert [fp for _, fp in ticket_fingerprints("CHG-42")][:1] == [after]
    with pytest.raises(CommandError, match="the ticket must not be empty"):
        _audit("ticket-fingerprint", "  ")


# -- as an operator types it: manage.py on an embedded install -----------------------------------


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_an_operator_checkpoints_and_later_catches_a_truncation(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "NEONPRO_MASTER_KEY", "NEONPRO_MASTER_KEY_FILE"}
    }
    env["NEONPRO_DATA_DIR"] = str(tmp_path)
    for step in (("keys", "create-master", "--if-missing"), ("migrate", "--noinput", "-v", "0"), ("keys", "init")):
        result = _manage(env, *step)
        assert result.returncode == 0, result.stderr
    kept = tmp_path / "kept-elsewhere.json"
    made = _manage(env, "audit", "checkpoint", "--out", str(kept), "--operator", "ops.bob", "--ticket", "CHG-7")
    assert made.returncode == 0, made.stderr
    head = json.loads(kept.read_text())
    verified = _manage(env, "audit", "verify", "--checkpoint", str(kept))
    assert verified.returncode == 0, verified.stderr
    assert f"up to event {head['last_id']}." in verified.stdout

    with sqlite3.connect(tmp_path / "neonpro.sqlite3") as db:  # no trigger on SQLite: delete the tail
        db.execute("DELETE FROM audit_auditevent WHERE id >= ?", [head["last_id"]])
    alone = _manage(env, "audit", "verify")
    assert alone.returncode == 0 and "Audit chain intact" in alone.stdout
    caught = _manage(env, "audit", "verify", "--checkpoint", str(kept))
    assert caught.returncode == 1
    assert f"the checkpoint's last event {head['last_id']} is missing" in caught.stderr
    fingerprint = _manage(env, "audit", "ticket-fingerprint", "CHG-7")
    assert fingerprint.returncode == 0 and fingerprint.stdout.strip().endswith("(active)")

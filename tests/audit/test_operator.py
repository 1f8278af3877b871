"""Operator commands name who ran them (--operator, the OS user by default), why, and the ticket."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from neonpro.audit.models import AuditEvent
from neonpro.audit.operator import make_operator, operator_context, os_user, ticket_fingerprint
from neonpro.audit.services import record_event

pytestmark = pytest.mark.django_db


def _mark() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_careteam_changes_carry_the_operator_reason_and_a_ticket_fingerprint(world: Any) -> None:
    start = _mark()

    call_command(
        "careteam",
        "add",
        "--patient",
        str(world.bob.pk),
        "--clinician",
        "dr.outside",
        "--operator",
        "jane.ops",
        "--reason",
        "support",
        "--ticket",
        "INC-4711",
        stdout=StringIO(),
    )

    event = AuditEvent.objects.get(id__gt=start, action="careteam.add")
    assert event.actor_role == "operator"
    assert event.details["operator"] == "jane.ops" and event.details["reason"] == "support"
    assert event.details["ticket_fingerprint"] == ticket_fingerprint("inc-4711 ")
    assert "4711" not in str(event.details)


def test_without_options_the_os_user_runs_it_for_maintenance(world: Any) -> None:
    start = _mark()

    call_command("careteam", "add", "--patient", str(world.bob.pk), "--clinician", "dr.outside", stdout=StringIO())

    event = AuditEvent.objects.get(id__gt=start, action="careteam.add")
    assert event.details["operator"] == os_user() and event.details["reason"] == "maintenance"
    assert "ticket_fingerprint" not in event.details


def test_key_commands_record_the_operator(system: Any) -> None:
    start = _mark()

    call_command(
        "keys", "rotate", "--purpose", "session", "--operator", "sec.officer", "--reason", "rotation", stdout=StringIO()
    )

    event = AuditEvent.objects.get(id__gt=start, action="key.rotate")
    assert (event.actor_role, event.details["operator"], event.details["reason"]) == (
        "operator",
        "sec.officer",
        "rotation",
    )


def test_db_grant_is_recorded_with_its_operator() -> None:
    start = _mark()

    call_command("db", "grant", "--operator", "dba", stdout=StringIO())

    event = AuditEvent.objects.get(id__gt=start, action="db.grant")
    assert event.details["operator"] == "dba" and event.details["app"] == "neonpro_app"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--operator", "jane doe"], "--operator must be an account name"),
        (["--operator", "ssn900551234"], "no runs of four digits"),
        (["--ticket", "  "], "--ticket must not be empty"),
    ],
)
def test_bad_operator_options_are_refused_before_anything_runs(world: Any, args: list[str], message: str) -> None:
    start = _mark()

    with pytest.raises(CommandError, match=message):
        call_command("careteam", "add", "--patient", str(world.bob.pk), "--clinician", "dr.outside", *args)

    assert not AuditEvent.objects.filter(id__gt=start, action="careteam.add").exists()


def test_an_unknown_reason_is_refused_by_the_keys_command_too() -> None:
    with pytest.raises(CommandError, match="--reason must be one of"):
        call_command("keys", "status", "--reason", "because")


def test_inside_a_web_request_the_signed_in_user_stays_the_actor() -> None:
    import uuid

    from neonpro.audit.services import bind_request, unbind_request

    user = uuid.uuid4()
    token = bind_request(actor_id=user, actor_role="clinician", source_ip=None, user_agent="", request_id=uuid.uuid4())
    try:
        with operator_context("jane.ops"):
            event = record_event("test.operator_in_request")
    finally:
        unbind_request(token)

    assert (event.actor_id, event.actor_role) == (user, "clinician") and "operator" not in event.details


def test_the_operator_replaces_system_but_not_a_named_actor() -> None:
    class Someone:
        user_id = None
        role = "clinician"

    with operator_context("jane.ops", "incident"):
        as_system = record_event("test.operator_system")
        as_someone = record_event("test.operator_someone", actor=Someone())

    assert as_system.actor_role == "operator" and as_system.details == {"operator": "jane.ops", "reason": "incident"}
    assert as_someone.actor_role == "clinician" and as_someone.details == {}


def test_fingerprints_are_stable_keyed_and_hide_the_ticket() -> None:
    assert ticket_fingerprint("INC-1") == ticket_fingerprint(" inc-1")
    assert ticket_fingerprint("INC-1") != ticket_fingerprint("INC-2")
    assert len(ticket_fingerprint("INC-1")) == 40
    assert make_operator(None, None, None).name == os_user()


def test_an_account_without_a_name_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    def no_entry() -> str:
        raise KeyError("getpwuid(): uid not found: 12345")

    monkeypatch.setattr(getpass, "getuser", no_entry)

    assert os_user() == "unknown"

"""Nobody changes an audit event: no UPDATE/DELETE/TRUNCATE grant for the application role,
and a trigger that refuses them for everyone, the table owner included."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.db import ProgrammingError, connections, transaction

from neonpro.audit.services import record_event
from tests.conftest import APP_ROLE

pytestmark = pytest.mark.django_db

STATEMENTS = {
    "update": "UPDATE audit_auditevent SET outcome = 'denied' WHERE id = %s",
    "delete": "DELETE FROM audit_auditevent WHERE id = %s",
    "truncate": "TRUNCATE audit_auditevent",
}


@pytest.mark.parametrize("verb", sorted(STATEMENTS))
def test_the_application_role_is_refused(verb: str) -> None:
    event = record_event("audit_test.append_only")
    audit = connections["audit"]
    with pytest.raises(ProgrammingError) as info, transaction.atomic(using="audit"), audit.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = '5s'")
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == APP_ROLE
        cursor.execute(STATEMENTS[verb], [event.pk] if "%s" in STATEMENTS[verb] else [])
    cause = info.value.__cause__
    assert isinstance(cause, psycopg.errors.InsufficientPrivilege)
    assert "permission denied for table audit_auditevent" in str(cause)  # the grant, before the trigger
    with audit.cursor() as cursor:
        cursor.execute("SELECT outcome FROM audit_auditevent WHERE id = %s", [event.pk])
        assert cursor.fetchone() == ("success",)


def test_the_application_role_may_only_insert_and_select() -> None:
    with connections["audit"].cursor() as cursor:
        cursor.execute(
            "SELECT p, has_table_privilege(current_user, 'audit_auditevent', p) "
            "FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p"
        )
        granted = {privilege for privilege, allowed in cursor.fetchall() if allowed}
    assert granted == {"SELECT", "INSERT"}


def test_the_append_only_triggers_are_installed_and_enabled(owner_cursor: Any) -> None:
    owner_cursor.execute(
        "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'audit_auditevent'::regclass AND NOT tgisinternal"
    )
    assert dict(owner_cursor.fetchall()) == {
        "audit_append_only_rows": "O",
        "audit_append_only_truncate": "O",
        "audit_id_from_sequence": "O",
    }


@pytest.mark.parametrize("verb", sorted(STATEMENTS))
def test_the_trigger_refuses_the_table_owner(commit_events: Any, owner_cursor: Any, verb: str) -> None:
    (event_id,) = commit_events(1)  # committed, so the owner's connection sees it
    owner_cursor.execute("SET lock_timeout = '5s'")
    owner_cursor.execute("SELECT current_user, outcome FROM audit_auditevent WHERE id = %s", [event_id])
    assert owner_cursor.fetchone() == ("neonpro_owner", "success")
    statement = STATEMENTS[verb]
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege, match=rf"append-only \({verb.upper()} refused\)"),
        owner_cursor.connection.transaction(force_rollback=True),  # should the trigger ever fail to fire
    ):
        owner_cursor.execute(statement, [event_id] if "%s" in statement else [])
    owner_cursor.execute("SELECT outcome FROM audit_auditevent WHERE id = %s", [event_id])
    assert owner_cursor.fetchone() == ("success",)

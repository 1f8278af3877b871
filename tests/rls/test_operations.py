"""The RLS migration operations (neonpro/security/rls.py), applied for real.

ProtectTable runs here against a temporary table the application role owns, so FORCE ROW
LEVEL SECURITY filters the role's own statements exactly as it filters the app on the PHI
tables: what the policies allow, deny, and fail closed on is observed, not the SQL text
alone. The tables vanish with the test's transaction. On SQLite (the embedded mode) both
operations must do nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.migrations.state import ProjectState
from django.db.utils import ConnectionHandler

from neonpro.security.context import ANONYMOUS, Identity
from neonpro.security.identity import set_identity
from neonpro.security.rls import (
    COMMANDS,
    UID,
    PostgresOnlySQL,
    ProtectTable,
    policy_statements,
    reverse_statements,
)

pytestmark = pytest.mark.django_db

TABLE = "rls_probe"
ALICE, BOB = uuid.uuid4(), uuid.uuid4()
POLICIES: dict[str, tuple[str | None, str | None]] = {
    "select": (f"owner = {UID}", None),
    "insert": (None, f"owner = {UID}"),
    "delete": (f"owner = {UID}", None),
    # no "update": a command without a policy is denied
}


def _sql(statement: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])
        return list(cursor.fetchall()) if cursor.description else []


def _refused(statement: str, params: list[Any]) -> bool:
    try:
        with transaction.atomic():
            _sql(statement, params)
    except DatabaseError:
        return True
    return False


def _act_as(user: uuid.UUID | None) -> None:
    with connection.cursor() as cursor:
        set_identity(cursor, ANONYMOUS if user is None else Identity(user_id=user, role="clinician"))


def _rls_flags() -> tuple[bool, bool]:
    [(enabled, forced)] = _sql(
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = %s::regclass", [f"pg_temp.{TABLE}"]
    )
    return enabled, forced


def _policies() -> dict[str, tuple[str, str | None, str | None]]:
    rows = _sql(
        "SELECT polname, polcmd, pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid) "
        "FROM pg_policy WHERE polrelid = %s::regclass",
        [f"pg_temp.{TABLE}"],
    )
    return {name: (cmd, using, check) for name, cmd, using, check in rows}


def _apply(operation: Any, direction: str = "forwards", app_label: str = "tests") -> None:
    with connection.schema_editor() as editor:
        getattr(operation, f"database_{direction}")(app_label, editor, ProjectState(), ProjectState())


@pytest.fixture
def probe() -> Iterator[ProtectTable]:
    _sql(f"CREATE TEMP TABLE {TABLE} (id serial PRIMARY KEY, owner uuid)")
    yield ProtectTable(TABLE, POLICIES)
    _sql(f"DROP TABLE IF EXISTS pg_temp.{TABLE}")


@pytest.fixture
def sqlite() -> Iterator[Any]:
    """A real SQLite database, as the embedded mode (`make run`) uses."""
    handler = ConnectionHandler({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})
    yield handler["default"]
    handler.close_all()


def test_protect_table_enables_and_forces_rls_with_one_policy_per_command(probe: ProtectTable) -> None:
    assert _rls_flags() == (False, False)
    _apply(probe)
    assert _rls_flags() == (True, True)
    policies = _policies()
    assert set(policies) == {f"{TABLE}_{command}" for command in COMMANDS}
    assert policies[f"{TABLE}_select"][0] == "r" and policies[f"{TABLE}_select"][2] is None
    assert policies[f"{TABLE}_insert"][0] == "a" and policies[f"{TABLE}_insert"][1] is None
    assert policies[f"{TABLE}_delete"][0] == "d" and policies[f"{TABLE}_delete"][2] is None
    assert policies[f"{TABLE}_update"] == ("w", "false", "false")  # no policy given: denied
    for _, using, check in policies.values():
        # The identity is read only through its verification, never from a plain setting.
        assert "neonpro_identity_claim('user_id'" in (using or check or "") or (using, check) == ("false", "false")
        assert "current_setting" not in (using or check or "")


def test_the_policies_filter_the_tables_own_role_and_fail_closed(probe: ProtectTable) -> None:
    _apply(probe)
    insert = f"INSERT INTO {TABLE} (owner) VALUES (%s)"
    _act_as(None)
    assert _refused(insert, [ALICE]), "no identity: nothing may be written"
    assert _sql(f"SELECT count(*) FROM {TABLE}") == [(0,)]
    _act_as(BOB)
    assert not _refused(insert, [BOB])
    _act_as(ALICE)
    assert not _refused(insert, [ALICE])
    assert _refused(insert, [BOB]), "WITH CHECK: no row for somebody else"
    assert _sql(f"SELECT owner FROM {TABLE}") == [(ALICE,)]
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET owner = owner")
        assert cursor.rowcount == 0, "no update policy: no row can be updated"
        cursor.execute(f"DELETE FROM {TABLE} WHERE owner = %s", [BOB])
        assert cursor.rowcount == 0, "Bob's row is invisible to Alice"
        cursor.execute(f"DELETE FROM {TABLE} WHERE owner = %s", [ALICE])
        assert cursor.rowcount == 1
    _act_as(None)
    assert _sql(f"SELECT count(*) FROM {TABLE}") == [(0,)]


def test_protect_table_can_run_again_and_be_reversed(probe: ProtectTable) -> None:
    _apply(probe)
    _apply(probe)  # idempotent: the policies are dropped and re-created
    assert len(_policies()) == len(COMMANDS)
    _apply(probe, "backwards")
    assert _rls_flags() == (False, False)
    assert _policies() == {}
    _act_as(None)
    _sql(f"INSERT INTO {TABLE} (owner) VALUES (%s), (%s)", [ALICE, BOB])
    assert _sql(f"SELECT count(*) FROM {TABLE}") == [(2,)]


def test_the_statements_are_exactly_what_the_operation_runs(probe: ProtectTable) -> None:
    with connection.schema_editor(collect_sql=True) as editor:
        probe.database_forwards("tests", editor, ProjectState(), ProjectState())
        forwards = list(editor.collected_sql)
    with connection.schema_editor(collect_sql=True) as editor:
        probe.database_backwards("tests", editor, ProjectState(), ProjectState())
        backwards = list(editor.collected_sql)
    assert forwards == [f"{s};" for s in policy_statements(TABLE, POLICIES)]
    assert backwards == [f"{s};" for s in reverse_statements(TABLE)]
    assert forwards[:2] == [
        f'ALTER TABLE "{TABLE}" ENABLE ROW LEVEL SECURITY;',
        f'ALTER TABLE "{TABLE}" FORCE ROW LEVEL SECURITY;',
    ]
    assert (
        f'CREATE POLICY "{TABLE}_update" ON "{TABLE}" AS PERMISSIVE FOR UPDATE USING (false) WITH CHECK (false);'
        in (forwards)
    )
    assert backwards[-2:] == [
        f'ALTER TABLE "{TABLE}" NO FORCE ROW LEVEL SECURITY;',
        f'ALTER TABLE "{TABLE}" DISABLE ROW LEVEL SECURITY;',
    ]


def test_a_policy_with_a_missing_clause_denies_that_clause() -> None:
    statements = policy_statements("t", {"select": (None, "ignored"), "update": ("true", None), "insert": ("x", None)})
    assert 'CREATE POLICY "t_select" ON "t" AS PERMISSIVE FOR SELECT USING (false)' in statements
    assert 'CREATE POLICY "t_update" ON "t" AS PERMISSIVE FOR UPDATE USING (true) WITH CHECK (false)' in statements
    assert 'CREATE POLICY "t_insert" ON "t" AS PERMISSIVE FOR INSERT WITH CHECK (false)' in statements
    assert 'CREATE POLICY "t_delete" ON "t" AS PERMISSIVE FOR DELETE USING (false)' in statements
    assert statements.count('DROP POLICY IF EXISTS "t_select" ON "t"') == 1


def test_postgres_only_sql_runs_on_postgresql_both_ways(probe: ProtectTable) -> None:
    operation = PostgresOnlySQL(
        f"COMMENT ON TABLE pg_temp.{TABLE} IS 'protected'", reverse_sql=f"COMMENT ON TABLE pg_temp.{TABLE} IS NULL"
    )
    comment = "SELECT obj_description(%s::regclass, 'pg_class')"
    _apply(operation)
    assert _sql(comment, [f"pg_temp.{TABLE}"]) == [("protected",)]
    _apply(operation, "backwards")
    assert _sql(comment, [f"pg_temp.{TABLE}"]) == [(None,)]


@pytest.mark.parametrize("direction", ["forwards", "backwards"])
def test_both_operations_do_nothing_on_sqlite(sqlite: Any, direction: str) -> None:
    operations = [ProtectTable(TABLE, POLICIES), PostgresOnlySQL("SELECT 1/0", reverse_sql="SELECT 1/0")]
    for operation in operations:
        with sqlite.schema_editor(collect_sql=True) as editor:
            getattr(operation, f"database_{direction}")("tests", editor, ProjectState(), ProjectState())
            assert editor.collected_sql == []


def test_protect_table_describes_itself_and_leaves_the_model_state_alone() -> None:
    operation = ProtectTable(TABLE, POLICIES)
    assert operation.describe() == f"Enable and force row-level security on {TABLE}"
    assert operation.migration_name_fragment == f"rls_{TABLE}"
    name, args, kwargs = operation.deconstruct()
    assert (name, args, kwargs) == ("ProtectTable", [], {"table": TABLE, "policies": POLICIES})
    assert ProtectTable(*args, **kwargs).policies == POLICIES
    assert operation.reversible and operation.reduces_to_sql
    state = ProjectState()
    operation.state_forwards("tests", state)
    assert state.models == {}


class _OnlyRecordsMigrate:
    """A router that lets only the records app migrate (as a multi-database setup might)."""

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return app_label == "records"


def test_postgres_only_sql_asks_the_routers_with_its_app_label(probe: ProtectTable, settings: Any) -> None:
    settings.DATABASE_ROUTERS = [_OnlyRecordsMigrate()]
    operation = PostgresOnlySQL(
        f"COMMENT ON TABLE pg_temp.{TABLE} IS 'routed'", reverse_sql=f"COMMENT ON TABLE pg_temp.{TABLE} IS 'back'"
    )
    comment = "SELECT obj_description(%s::regclass, 'pg_class')"
    _apply(operation, app_label="patients")
    assert _sql(comment, [f"pg_temp.{TABLE}"]) == [(None,)], "the router refused this app"
    _apply(operation, app_label="records")
    assert _sql(comment, [f"pg_temp.{TABLE}"]) == [("routed",)]
    _apply(operation, "backwards", app_label="patients")
    assert _sql(comment, [f"pg_temp.{TABLE}"]) == [("routed",)]
    _apply(operation, "backwards", app_label="records")
    assert _sql(comment, [f"pg_temp.{TABLE}"]) == [("back",)]

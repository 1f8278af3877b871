"""The index operations of patients/records 0007: CONCURRENTLY on PostgreSQL, plain elsewhere.

Run on a probe table of their own, through a separate autocommit connection as the owner
(an index build CONCURRENTLY refuses to run inside a transaction, and the app role has no
DDL), and on SQLite, as the embedded mode migrates.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, models
from django.db.migrations.state import ModelState, ProjectState
from django.db.utils import ConnectionHandler

from neonpro.security.rls import AddIndexOnline, RemoveIndexOnline
from tests.conftest import OWNER_ROLE

pytestmark = pytest.mark.django_db

APP = "rlsplan_probe"
TABLE = "rlsplan_probe_thing"
INDEX = models.Index(fields=["-n", "id"], name="rlsplan_probe_n")


def _state(*indexes: models.Index) -> ProjectState:
    state = ProjectState()
    fields: list[tuple[str, models.Field[Any, Any]]] = [
        ("id", models.UUIDField(primary_key=True)),
        ("n", models.IntegerField()),
    ]
    options = {"db_table": TABLE, "indexes": list(indexes)}
    state.add_model(ModelState(APP, "Thing", fields, options=options))
    return state


@pytest.fixture
def owner_connection(django_db_blocker: Any) -> Iterator[Any]:
    settings = {**connection.settings_dict, "USER": OWNER_ROLE, "PASSWORD": ""}
    handler = ConnectionHandler({"default": settings})
    with django_db_blocker.unblock():
        yield handler["default"]
        with handler["default"].cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
        handler.close_all()


@pytest.fixture
def sqlite() -> Iterator[Any]:
    handler = ConnectionHandler({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})
    yield handler["default"]
    handler.close_all()


def _indexes(conn: Any) -> set[str]:
    with conn.cursor() as cursor:
        return set(conn.introspection.get_constraints(cursor, TABLE))


def _check(conn: Any) -> list[bool]:
    """Add the index, drop it again (reversed), then the same through RemoveIndexOnline."""
    seen = []
    bare, indexed = _state(), _state(INDEX)
    add = AddIndexOnline(model_name="thing", index=INDEX)
    remove = RemoveIndexOnline(model_name="thing", name=INDEX.name)
    with conn.schema_editor(atomic=False) as editor:
        editor.create_model(bare.apps.get_model(APP, "Thing"))
        add.database_forwards(APP, editor, bare, indexed)
        seen.append(INDEX.name in _indexes(conn))
        add.database_backwards(APP, editor, indexed, bare)
        seen.append(INDEX.name in _indexes(conn))
        add.database_forwards(APP, editor, bare, indexed)
        remove.database_forwards(APP, editor, indexed, bare)
        seen.append(INDEX.name in _indexes(conn))
        remove.database_backwards(APP, editor, bare, indexed)
        seen.append(INDEX.name in _indexes(conn))
        editor.delete_model(indexed.apps.get_model(APP, "Thing"))
    return seen


def test_on_postgresql_the_indexes_are_built_and_dropped_concurrently(owner_connection: Any) -> None:
    statements: list[str] = []

    def record(execute: Any, sql: str, *args: Any) -> Any:
        statements.append(sql)
        return execute(sql, *args)

    owner_connection.execute_wrappers.append(record)
    assert _check(owner_connection) == [True, False, False, True]
    assert any(s.startswith("CREATE INDEX CONCURRENTLY") for s in statements)
    assert any(s.startswith("DROP INDEX CONCURRENTLY") for s in statements)


def test_on_sqlite_they_are_plain_index_changes(sqlite: Any) -> None:
    assert _check(sqlite) == [True, False, False, True]

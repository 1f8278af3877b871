"""DROP COLUMN leaves the plaintext on disk; VACUUM FULL (or pg_repack) is what erases it.

Reproduces the review's finding against this machine's PostgreSQL files, so the runbook in
docs/migrating-in.md ("Erase the plaintext PostgreSQL still keeps") stays true.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection

from tests.conftest import superuser_dsn

pytestmark = pytest.mark.django_db
TABLE = "keys_tests_dropped_plaintext"
ROWS = 200


@pytest.fixture
def superuser() -> Iterator[Any]:
    with psycopg.connect(superuser_dsn(connection.settings_dict["NAME"]), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        try:
            yield conn
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {TABLE}")


def _ssns_on_disk(conn: Any) -> int:
    conn.execute("CHECKPOINT")
    data = Path(conn.execute("SHOW data_directory").fetchone()[0])
    relation = data / conn.execute("SELECT pg_relation_filepath(%s)", [TABLE]).fetchone()[0]
    segments = [relation, *sorted(relation.parent.glob(relation.name + ".*"))]
    return sum(path.read_bytes().count(b"900-44-") for path in segments if path.exists())


def test_drop_column_keeps_every_ssn_and_vacuum_full_erases_them(superuser: Any) -> None:
    superuser.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, ssn text, ssn_enc bytea)")
    superuser.execute(
        f"INSERT INTO {TABLE} SELECT i, '900-44-' || lpad(i::text, 4, '0'), '\\x01'::bytea "
        "FROM generate_series(1, %s) i",
        [ROWS],
    )
    assert _ssns_on_disk(superuser) == ROWS

    superuser.execute(f"ALTER TABLE {TABLE} DROP COLUMN ssn")

    assert superuser.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0] == ROWS
    assert _ssns_on_disk(superuser) == ROWS  # still there, byte for byte

    superuser.execute(f"VACUUM (FULL) {TABLE}")

    assert _ssns_on_disk(superuser) == 0

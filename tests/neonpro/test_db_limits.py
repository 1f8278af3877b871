"""Every connection starts time-limited; only migrations and the long jobs lift the limit."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import OperationalError, connection, transaction

from neonpro.db.limits import lift_for_migrations, long_statements
from neonpro.security.unavailable import infrastructure_reason

pytestmark = pytest.mark.django_db


def _show(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return str(cursor.fetchone()[0])


def test_a_connection_of_the_app_is_time_limited() -> None:
    assert _show("statement_timeout") == "15s"
    assert _show("lock_timeout") == "5s"
    assert _show("idle_in_transaction_session_timeout") == "1min"


def test_a_long_job_lifts_the_statement_limit_for_its_transaction() -> None:
    # SET LOCAL: it ends with the transaction (here, the test's own, which holds every test).
    with transaction.atomic(), long_statements():
        assert _show("statement_timeout") == "10min"


def test_a_long_job_may_name_its_limit_and_the_setting_gives_the_default(settings: Any) -> None:
    with transaction.atomic(), long_statements(milliseconds=90_000):
        assert _show("statement_timeout") == "90s"
    settings.NEONPRO_DB_LONG_STATEMENT_TIMEOUT_MS = 120_000
    with transaction.atomic(), long_statements():
        assert _show("statement_timeout") == "2min"


def test_a_statement_past_its_limit_is_a_service_condition_not_a_bug() -> None:
    with pytest.raises(OperationalError) as raised, transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', '50ms', true)")
            cursor.execute("SELECT pg_sleep(1)")

    assert infrastructure_reason(raised.value) == "a statement ran past its time limit"


def test_migrations_run_untimed() -> None:
    lift_for_migrations(using="default")
    try:
        assert _show("statement_timeout") == "0"
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET statement_timeout")
    assert _show("statement_timeout") == "15s"


def test_the_embedded_mode_has_no_limits_to_lift(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.test.utils import CaptureQueriesContext

    monkeypatch.setattr(connection, "vendor", "sqlite")
    with CaptureQueriesContext(connection) as queries:
        lift_for_migrations(using="default")
        with long_statements():
            pass

    assert not queries.captured_queries

"""``manage.py audit export`` writes JSON lines for a SIEM; ``audit verify`` reports the chain."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from neonpro.audit.models import AuditEvent
from neonpro.audit.services import record_event

pytestmark = pytest.mark.django_db


def _export(*args: str) -> tuple[list[dict[str, object]], str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("audit", "export", *args, stdout=out, stderr=err)
    return [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def test_export_writes_one_json_object_per_line_with_ids_and_hashes(three_days: list[AuditEvent]) -> None:
    rows, err = _export("--since", "1999-03-01", "--until", "1999-03-04")
    assert [row["id"] for row in rows] == [event.pk for event in three_days]
    assert err.strip() == "3 events exported."
    for row, event in zip(rows, three_days, strict=True):
        assert row["hash"] == bytes(event.hash).hex()
        assert row["prev_hash"] == bytes(event.prev_hash).hex()
        assert row["action"] == "audit_test.export" and row["outcome"] == "success"
        assert row["occurred_at"] == event.occurred_at.isoformat()


@pytest.mark.parametrize(
    ("args", "days"),
    [
        (["--since", "1999-03-02"], [2, 3]),
        (["--since", "1999-03-02T10:00:00Z", "--until", "1999-03-03T10:00:00Z"], [2]),
        (["--since", "1999-03-01", "--until", "1999-03-02"], [1]),
        (["--since", "1999-03-02T12:00:00+02:00", "--until", "1999-03-03"], [2]),  # 10:00 UTC
        (["--since", "1999-03-02T10:00:01", "--until", "1999-03-04"], [3]),  # no offset: UTC
        (["--since", "1999-03-04"], []),
    ],
    ids=["since-date", "since-until-exclusive", "one-day", "offset", "naive-is-utc", "nothing-after"],
)
def test_export_filters_by_since_and_until(three_days: list[AuditEvent], args: list[str], days: list[int]) -> None:
    rows, err = _export(*args)
    by_day = {event.pk: event.details["day"] for event in three_days}
    exported_days = [by_day[row["id"]] for row in rows if row["id"] in by_day]
    assert exported_days == days
    if "--until" in args:
        assert err.strip() == f"{len(days)} events exported."


def test_export_without_bounds_includes_every_event(three_days: list[AuditEvent]) -> None:
    rows, err = _export()
    ids = [row["id"] for row in rows]
    assert {event.pk for event in three_days} <= set(ids)
    assert ids == sorted(ids)
    assert err.strip() == f"{AuditEvent.objects.count()} events exported."


@pytest.mark.parametrize("option", ["--since", "--until"])
@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2024-01-01 oops",
        "not-a-date",
        "2024-13-01",
        "2024-02-30T00:00:00",
    ],
)
def test_an_invalid_moment_is_a_command_error(option: str, value: str) -> None:
    with pytest.raises(CommandError, match="is not an ISO 8601 date or datetime"):
        _export(option, value)


def test_verify_reports_an_intact_chain() -> None:
    record_event("audit_test.verify")
    out = io.StringIO()
    call_command("audit", "verify", stdout=out)
    assert out.getvalue().startswith("Audit chain intact: ")
    assert out.getvalue().strip().endswith(f"{AuditEvent.objects.count()} events verified.")

"""Admin changelists of big tables are keyset pages (neonpro/security/admin_pages.py): every
row once across "Next page" links, no COUNT and no OFFSET, no sorting by a column of the
client's choosing, and a bad cursor is the admin's own "invalid lookup" answer, not a 500."""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from neonpro.accounts.models import Notification
from neonpro.audit.models import AuditEvent
from neonpro.audit.services import record_event
from neonpro.security.context import system_context
from patients.models import CareTeamMembership, EmergencyAccessGrant
from tests.conftest import sign_in_as

pytestmark = pytest.mark.django_db
NEXT = re.compile(r'<a href="([^"]+)" class="next-page end">Next page</a>')


def admin_client(user: Any) -> Client:
    user.is_superuser = True
    user.save()
    client = Client()
    sign_in_as(client, user)
    return client


def walk(client: Client, url: str, row: re.Pattern[str]) -> list[list[str]]:
    pages: list[list[str]] = []
    path, _, first = url.partition("?")
    query: str | None = f"?{first}" if first else ""
    while query is not None:
        response = client.get(path + query, secure=True)
        assert response.status_code == 200, response.status_code
        body = response.content.decode()
        pages.append(list(dict.fromkeys(row.findall(body))))
        found = NEXT.search(body)
        query = html.unescape(found.group(1)) if found else None
        assert len(pages) < 100
    return pages


def test_the_audit_log_walks_in_keyset_pages_newest_first(world) -> None:  # type: ignore[no-untyped-def]
    for _ in range(230):
        record_event("test.filler", resource_type="tests.filler")
    client = admin_client(world.admin)
    expected = [str(pk) for pk in AuditEvent.objects.order_by("-id").values_list("id", flat=True)]
    pages = walk(client, "/admin/audit/auditevent/", re.compile(r"/admin/audit/auditevent/(\d+)/change/"))
    seen = [pk for page in pages for pk in page]
    assert seen[: len(expected)] == expected, "every event once, newest first"
    assert len(seen) == len(set(seen))
    assert [len(page) for page in pages[:-1]] == [100] * (len(pages) - 1)


def test_an_admin_page_neither_counts_nor_offsets(world) -> None:  # type: ignore[no-untyped-def]
    for _ in range(120):
        record_event("test.filler", resource_type="tests.filler")
    client = admin_client(world.admin)
    first = client.get("/admin/audit/auditevent/", secure=True).content.decode()
    second_url = html.unescape(NEXT.search(first).group(1))  # type: ignore[union-attr]
    with CaptureQueriesContext(connections["audit"]) as audit_queries, CaptureQueriesContext(connections["default"]):
        page = client.get("/admin/audit/auditevent/" + second_url + "&o=3", secure=True)
    assert page.status_code == 200
    listing = [q["sql"] for q in audit_queries.captured_queries if "audit_auditevent" in q["sql"]]
    assert listing and all("COUNT(" not in sql.upper() and "OFFSET" not in sql for sql in listing), listing
    assert all("LIMIT" in sql for sql in listing), "every read of the log is bounded (filters too)"
    assert not any("DISTINCT" in sql for sql in listing), "no SELECT DISTINCT over the whole log"
    assert any('ORDER BY "audit_auditevent"."id" DESC' in sql for sql in listing), "the keyset order, not ?o="
    body = page.content.decode()
    assert "First page" in body and 'class="sortable' not in body


def test_a_bad_admin_cursor_is_the_admins_invalid_lookup_redirect(world) -> None:  # type: ignore[no-untyped-def]
    client = admin_client(world.admin)
    response = client.get("/admin/audit/auditevent/?p=c1.tampered", secure=True)
    assert response.status_code == 302 and response["Location"].endswith("?e=1")
    assert client.get("/admin/audit/auditevent/?p=3", secure=True).status_code == 200, "an old page number: page 1"


def test_filters_apply_to_every_keyset_page(world) -> None:  # type: ignore[no-untyped-def]
    for _ in range(150):
        record_event("test.filler", resource_type="tests.filler", outcome="denied")
        record_event("test.other", resource_type="tests.filler")
    client = admin_client(world.admin)
    denied = {str(pk) for pk in AuditEvent.objects.filter(outcome="denied").values_list("id", flat=True)}
    pages = walk(
        client, "/admin/audit/auditevent/?outcome__exact=denied", re.compile(r"/admin/audit/auditevent/(\d+)/change/")
    )
    seen = [pk for page in pages for pk in page]
    assert len(pages) >= 2 and set(seen) == denied and len(seen) == len(denied)


def test_notifications_account_changes_grants_and_care_teams_page_by_keyset(world, user_factory) -> None:  # type: ignore[no-untyped-def]
    clinicians = [user_factory("clinician") for _ in range(3)]
    with system_context("test: rows for the admin lists"):
        Notification.objects.bulk_create(
            [Notification(recipient=world.admin, kind="break_glass", details={}) for _ in range(130)]
        )
        for clinician in clinicians:
            CareTeamMembership.objects.create(patient=world.bob, clinician=clinician)
            EmergencyAccessGrant.objects.create(
                clinician=clinician, patient=world.alice, reason="x" * 30, expires_at=timezone.now() + dt.timedelta(1)
            )
    client = admin_client(world.admin)
    notes = walk(
        client,
        "/admin/accounts/notification/",
        re.compile(r"/admin/accounts/notification/([0-9a-f-]{36})/change/"),
    )
    with system_context("test: expected order"):
        expected = [str(pk) for pk in Notification.objects.order_by("-created_at", "-id").values_list("id", flat=True)]
    assert [pk for page in notes for pk in page] == expected and len(notes) == 2
    for url in (
        "/admin/accounts/accountchange/",
        "/admin/patients/careteammembership/",
        "/admin/patients/emergencyaccessgrant/",
    ):
        response = client.get(url, secure=True)
        assert response.status_code == 200, url
        assert "on this page" in response.content.decode()
    teams = walk(
        client,
        "/admin/patients/careteammembership/",
        re.compile(r"/admin/patients/careteammembership/([0-9a-f-]{36})/change/"),
    )
    with system_context("test: expected order"):
        memberships = CareTeamMembership._plain.order_by("clinician_id", "patient_id", "id").values_list(
            "id", flat=True
        )
        assert [pk for page in teams for pk in page] == [str(pk) for pk in memberships]


def test_value_filters_offer_recent_values_and_filter_by_any(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from neonpro.security import admin_pages

    record_event("test.old_kind", resource_type="tests.filler")
    for _ in range(5):
        record_event("test.recent_kind", resource_type="tests.filler")
    monkeypatch.setattr(admin_pages, "RECENT_ROWS", 5)
    client = admin_client(world.admin)
    body = client.get("/admin/audit/auditevent/", secure=True).content.decode()
    assert "?action=test.recent_kind" in body and "?action=test.old_kind" not in body, "only the newest rows' values"
    old = client.get("/admin/audit/auditevent/?action=test.old_kind", secure=True)
    assert old.status_code == 200
    [row] = re.findall(r"/admin/audit/auditevent/(\d+)/change/", old.content.decode())[:1]
    assert AuditEvent.objects.get(pk=int(row)).action == "test.old_kind"
    assert len(set(re.findall(r"/admin/audit/auditevent/(\d+)/change/", old.content.decode()))) == 1
    anonymous = client.get("/admin/audit/auditevent/?actor_role=", secure=True)
    assert anonymous.status_code == 200
    notes = client.get("/admin/accounts/notification/?kind=break_glass", secure=True)
    changes = client.get("/admin/accounts/accountchange/?operation=INSERT", secure=True)
    assert notes.status_code == changes.status_code == 200

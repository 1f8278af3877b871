"""The security dashboard (/admin/security/dashboard/): each panel with data, charts as inline
SVG, the audit chain verified on demand, who may see it — and no PHI, even with demo data."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import Group
from django.db import connections
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from keys.keyring import keyring
from keys.models import ReencryptionJob
from neonpro.accounts.lockout import keyed_username
from neonpro.accounts.models import Notification
from neonpro.accounts.services import PRIVACY_OFFICERS, ensure_administrators_group
from neonpro.audit.models import AuditEvent
from neonpro.audit.services import record_event
from neonpro.security import dashboard
from neonpro.security.context import system_context
from patients.demo import DEMO_PATIENTS, seed_demo
from patients.models import EmergencyAccessGrant, Patient
from tests.conftest import sign_in_as

pytestmark = pytest.mark.django_db
URL = "/admin/security/dashboard/"
VERIFY = "/admin/security/dashboard/verify-audit/"
REASON = "Unconscious in the emergency bay, no history available"


def _administrator(user: Any) -> Client:
    user.groups.add(ensure_administrators_group())
    client = Client()
    sign_in_as(client, user)
    return client


def _panel(page: str, name: str) -> str:
    found = re.search(rf'<section class="module neonpro-panel" id="panel-{name}">(.*?)</section>', page, re.S)
    assert found, f"no {name} panel"
    return found.group(1)


def _verify(client: Client) -> str:
    """Press "Verify the audit chain"; the dashboard it returns to."""
    response = client.post(VERIFY, secure=True)
    assert (response.status_code, response["Location"]) == (302, URL)
    return client.get(URL, secure=True).content.decode()


def _as(user: Any) -> SimpleNamespace:
    return SimpleNamespace(user_id=user.pk, role=user.role)


def _grant(clinician: Any, patient: Any, **fields: Any) -> EmergencyAccessGrant:
    with system_context("test: a break-glass grant"):
        return EmergencyAccessGrant.objects.create(
            clinician=clinician,
            patient=patient,
            reason=REASON,
            expires_at=fields.pop("expires_at", timezone.now() + dt.timedelta(hours=1)),
            **fields,
        )


def _lock(username: str | None, address: str, failures: int) -> None:
    AccessAttempt.objects.create(
        username=keyed_username(username) if username else None,
        ip_address=address,
        user_agent=f"test {uuid.uuid4()}",
        http_accept="*/*",
        path_info="/accounts/login/",
        get_data="",
        post_data="",
        failures_since_start=failures,
    )


def test_each_panel_shows_its_data_and_charts(world: Any, settings: Any) -> None:
    settings.NEONPRO_KEY_ROTATION = {"field": {"max_age_days": 0}}  # the field key is due at once
    ReencryptionJob.objects.create(
        purpose="field", model="patients.Patient", target_key_id=1, rows_total=200, rows_done=50
    )
    ReencryptionJob.objects.create(
        purpose="index", model="records.MedicalRecord", target_key_id=2, rows_total=10, rows_done=10, status="done"
    )
    with system_context("test: grants other tests committed"):
        awaiting = EmergencyAccessGrant.objects.filter(reviewed_at__isnull=True).count()
    now = timezone.now()
    active = _grant(world.outsider, world.bob)
    hours = dt.timedelta(hours=1)
    ended = _grant(world.doctor, world.bob, granted_at=now - 3 * hours, ended_at=now - hours)
    expired = _grant(
        world.outsider,
        world.alice,
        granted_at=now - dt.timedelta(hours=2),
        expires_at=now - dt.timedelta(minutes=30),
        reviewed_at=now,
        reviewed_by=world.admin,
        review_outcome="appropriate",
    )
    # Committed by other tests (from threads), if any: the counts below are on top of these.
    denied_before = dashboard.denied_panel(now)["chart"].total
    signin_before = {name: chart.total for name, chart in dashboard.signin_panel(now).items() if name != "locked"}
    record_event("patient.read", outcome="denied", actor=_as(world.outsider), resource_type="patients.patient")
    record_event("record.read", outcome="denied", actor=_as(world.alice_user), resource_type="records.medicalrecord")
    record_event("auth.login_failed", outcome="denied")
    record_event("signin.mfa_failed", outcome="denied")
    record_event("signin.locked_out", outcome="denied")
    _lock("dr.care", "192.0.2.10", 5)  # a staff account, locked
    _lock("alice", "192.0.2.11", 5)  # a patient's: never named
    _lock(None, "198.51.100.7", 50)  # an address, locked
    _lock("dr.outside", "192.0.2.12", 2)  # failures below the limit: not locked

    page = _administrator(world.admin).get(URL, secure=True).content.decode()

    keys = _panel(page, "keys")
    assert "field" in keys and "due: 0 days old" in keys and "<progress" in keys and " / 2^62" in keys
    jobs = _panel(page, "reencryption")
    assert "patients.Patient" in jobs and '<progress value="50" max="200">' in jobs and "25.0%" in jobs
    assert "records.MedicalRecord (index, done" in jobs
    grants = _panel(page, "break-glass")
    assert f"{awaiting + 2} awaiting review" in grants
    for grant in (active, ended, expired):
        assert str(grant.pk) in grants
    assert "dr.outside" in grants and "dr.care" in grants
    assert "(active)" in grants and "2 h 0 min (ended)" in grants and "1 h 30 min (expired)" in grants
    assert "Appropriate" in grants and "awaiting review" in grants
    denied = _panel(page, "denied")
    assert "patient.read" in denied and "dr.outside" in denied
    assert "record.read" in denied and "a patient&#x27;s portal account" in denied
    assert "auth.login_failed" not in denied, "sign-in failures have their own panel"
    assert f"Denied accesses: {denied_before + 2} in 14 days" in denied
    signin = _panel(page, "signin")
    assert f"Sign-in failures: {signin_before['failures'] + 2} in 14 days" in signin
    assert f"Lock-outs: {signin_before['lockouts'] + 1} in 14 days" in signin
    assert re.search(r'<tr class="locked-account"><td>dr\.care</td><td>5</td>', signin)
    assert escape(dashboard.UNKNOWN_ACCOUNT) in signin and "address 198.51.100.7" in signin
    assert "dr.outside" not in signin and "192.0.2.10" not in signin
    for chart in ("chart-denied", "chart-signin-failures", "chart-lockouts"):
        svg = re.search(rf'<figure class="neonpro-chart" id="{chart}">\s*<svg (.*?)</svg>', page, re.S)
        assert svg, chart
        assert svg.group(1).count('<rect class="bar"') == dashboard.DAYS
    assert "style=" not in page.split("<body", 1)[1]
    assert REASON not in page and "alice" not in page


def test_empty_panels_say_so(world: Any) -> None:
    page = _administrator(world.admin).get(URL, secure=True).content.decode()
    assert "No re-encryption is running." in _panel(page, "reencryption")
    assert "No account or address is locked." in _panel(page, "signin")
    assert "never" in _panel(page, "audit")


def test_a_day_chart_scales_its_bars_to_the_busiest_day() -> None:
    now = dt.datetime(1999, 3, 14, 12, tzinfo=dt.UTC)
    for day, count in ((13, 1), (14, 4)):
        for _ in range(count):
            record_event("test.chart", now=dt.datetime(1999, 3, day, 9, tzinfo=dt.UTC))
    record_event("test.chart", now=dt.datetime(1999, 2, 1, 9, tzinfo=dt.UTC))  # before the window
    chart = dashboard.day_chart(AuditEvent.objects.filter(action="test.chart"), now)
    assert (chart.total, chart.peak) == (5, 4)
    *_, before, last = chart.bars
    assert (before.day, before.count, before.height) == (dt.date(1999, 3, 13), 1, dashboard.CHART_HEIGHT // 4)
    assert (last.day, last.height, last.y) == (dt.date(1999, 3, 14), dashboard.CHART_HEIGHT, 0)
    assert chart.bars[0].day == dt.date(1999, 3, 1) and chart.bars[0].height == 0


def test_no_data_keys_yet_is_said(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "key_inventory", lambda now: [])
    page = _administrator(world.admin).get(URL, secure=True).content.decode()
    assert "No data keys yet" in _panel(page, "keys")


def test_verify_runs_the_audit_check_and_reports_intact(world: Any) -> None:
    client = _administrator(world.admin)
    assert client.get(VERIFY, secure=True).status_code == 405, "a POST only"
    page = _verify(client)
    checked = re.search(r"Audit chain intact: (\d+) events verified\.", page)
    assert checked, page
    audit = _panel(page, "audit")
    assert "intact" in audit and f"{checked.group(1)} events verified" in audit and "by admin1" in audit
    event = AuditEvent.objects.filter(action="audit.verify").order_by("-id").first()
    assert event is not None and event.outcome == "success" and event.actor_id == world.admin.pk
    assert event.details == {"checked": int(checked.group(1)), "problems": 0}


def test_verify_reports_a_tampered_chain(world: Any) -> None:
    """A forged event, appended with the application role's SQL (as tests/audit/test_attacks.py
    forges one: a hash that is not the audit key's HMAC), in this test's transaction."""
    client = _administrator(world.admin)
    tail = record_event("test.before_forgery")
    with connections["audit"].cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditevent (occurred_at, actor_role, action, resource_type, outcome, purpose, "
            "user_agent_hash, details, prev_hash, hash, key_id) VALUES (now(), 'clinician', 'record.delete', '', "
            "'success', '', '', '{}'::jsonb, %s, %s, %s) RETURNING id",
            [bytes(tail.hash), bytes(32 * [7]), keyring.mac_keys("audit")[0].key_id],
        )
        forged = cursor.fetchone()[0]

    page = _verify(client)
    assert f"Audit chain broken: event {forged}: content does not match its hash" in page
    audit = _panel(page, "audit")
    assert "broken" in audit and "1 problem found" in audit
    assert AuditEvent.objects.filter(action="audit.verify").order_by("-id").first().outcome == "error"  # type: ignore[union-attr]


def test_only_staff_who_may_read_the_audit_log_see_it(world: Any, user_factory: Any) -> None:
    clerk = user_factory("admin", is_staff=True)  # staff, no permissions
    client = Client()
    sign_in_as(client, clerk)
    assert client.get(URL, secure=True).status_code == 403
    assert client.post(VERIFY, secure=True).status_code == 403
    index = client.get("/admin/", secure=True).content.decode()
    assert "security-dashboard-link" not in index and "security-module" not in index

    officer = user_factory("admin", is_staff=True)
    officer.groups.add(Group.objects.get(name=PRIVACY_OFFICERS))
    client = Client()
    sign_in_as(client, officer)
    page = client.get(URL, secure=True).content.decode()
    shown = set(re.findall(r'id="panel-([a-z-]+)"', page))
    assert shown == {"audit", "break-glass", "denied"}, "each panel needs its own view permission"


def test_the_index_links_the_dashboard_and_counts_unread_notices(world: Any) -> None:
    with system_context("test: notices"):
        Notification.objects.bulk_create([Notification(recipient=world.admin, kind="break_glass") for _ in range(2)])
        Notification.objects.create(recipient=world.admin, kind="break_glass", read_at=timezone.now())
        Notification.objects.create(recipient=world.doctor, kind="break_glass")
    page = _administrator(world.admin).get("/admin/", secure=True).content.decode()
    assert f'href="{URL}" id="security-dashboard-link"' in page
    assert '<span class="neonpro-unread some" id="unread-notices">2 unread</span>' in page
    assert "NeonPro Records administration" in page and "<title>Site administration | NeonPro Records admin" in page
    assert "/static/neonpro/admin.css" in page


def test_no_demo_patient_appears_in_the_dashboard(db: None) -> None:
    seed_demo()
    from neonpro.accounts.models import User

    admin, grey = User.objects.get(username="admin"), User.objects.get(username="dr.grey")
    with system_context("test: the demo patients"):
        patients = list(Patient.objects.all())
    for patient in patients:
        _grant(grey, patient)
        record_event("patient.read", outcome="denied", actor=_as(grey), patient_id=patient.pk)
    record_event("portal.read", outcome="denied", actor=_as(User.objects.get(username="patient.ada")))
    client = Client()
    sign_in_as(client, admin)
    page = client.get(URL, secure=True).content.decode()
    assert client.post(VERIFY, secure=True).status_code == 302
    page += client.get(URL, secure=True).content.decode()

    assert "dr.grey" in page and all(str(patient.pk) not in page for patient in patients)
    for name, dob, mrn, ssn, email, phone in DEMO_PATIENTS:
        for phi in (name, mrn, ssn, email, phone, dob.isoformat()):
            assert phi not in page, phi
    assert "patient.ada" not in page and REASON not in page


def test_key_counts_read_as_people_write_them() -> None:
    row = SimpleNamespace(encryption_count=10_000)
    line = dashboard.KeyLine(row, max_age_days=90, max_encryptions=2**30, due="")  # type: ignore[arg-type]
    assert (line.encryptions, line.encryption_limit) == ("10,000", "2^30")
    unlimited = dashboard.KeyLine(row, max_age_days=None, max_encryptions=None, due="")  # type: ignore[arg-type]
    assert unlimited.encryption_limit == "" and dashboard._count(3 << 20) == "3,145,728"

"""Every page of the web UI sends the API's security headers (a CSP without 'unsafe-inline',
no-store, frame denial, nosniff) and holds nothing the CSP would have to allow: no inline
script, no style attribute, no <style> element; every input has a label."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from tests.conftest import sign_in_as

pytestmark = pytest.mark.django_db


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts = 0
        self.style_attributes: list[str] = []
        self.style_elements = 0
        self.inputs: list[str] = []
        self.labels: set[str] = set()
        self._in_label = 0
        self._script_has_src = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if "style" in named:
            self.style_attributes.append(tag)
        if tag == "script":
            self._script_has_src = "src" in named or named.get("type") == "application/json"
        if tag == "style":
            self.style_elements += 1
        if tag == "label":
            self._in_label += 1
            if named.get("for"):
                self.labels.add(str(named["for"]))
        if tag in ("input", "select", "textarea") and named.get("type") not in ("hidden", "submit", "button"):
            if not self._in_label and "aria-label" not in named:
                self.inputs.append(str(named.get("id", named.get("name", tag))))

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._in_label -= 1

    def handle_data(self, data: str) -> None:
        if self.lasttag == "script" and not self._script_has_src and data.strip():
            self.inline_scripts += 1


def _check(answer: Any, url: str) -> None:
    assert answer.status_code == 200, (url, answer.status_code)
    policy = answer["Content-Security-Policy"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert answer["Cache-Control"] == "no-store", url
    assert answer["X-Frame-Options"] == "DENY" and answer["X-Content-Type-Options"] == "nosniff"
    page = _Page()
    page.feed(answer.content.decode())
    assert page.inline_scripts == 0 and page.style_elements == 0, url
    assert page.style_attributes == [], (url, page.style_attributes)
    unlabelled = [name for name in page.inputs if name not in page.labels]
    assert unlabelled == [], (url, unlabelled)


@pytest.fixture
def pages(world: Any) -> dict[str, Any]:
    from neonpro.security.context import system_context
    from records.models import Appointment, MedicalRecord

    with system_context("test rows"):
        return _pages(world, Appointment, MedicalRecord)


def _pages(world: Any, Appointment: Any, MedicalRecord: Any) -> dict[str, Any]:  # noqa: N803
    record = MedicalRecord.objects.create(patient=world.alice, provider=world.doctor, diagnosis="Check-up")
    visit = Appointment.objects.create(
        patient=world.alice,
        provider=world.doctor,
        scheduled_at=timezone.now() + dt.timedelta(days=3),
        status=Appointment.Status.CONFIRMED,
    )
    alice = world.alice.pk
    return {
        "clinician": [
            "/patients/",
            "/patients/search/",
            f"/patients/{alice}/",
            f"/patients/{alice}/records/new/",
            f"/records/{record.pk}/",
            f"/records/{record.pk}/edit/",
            f"/patients/{alice}/appointments/new/",
            "/appointments/",
            f"/appointments/{visit.pk}/reschedule/",
            "/notifications/",
            "/accounts/sessions/",
            "/accounts/mfa/",
        ],
        "patient": ["/portal/", "/portal/contact/", "/portal/appointments/new/", "/notifications/"],
        "admin": ["/", "/notifications/"],
        "anonymous": ["/accounts/login/", "/accounts/password/reset/"],
    }


def test_every_page_of_every_role_sends_the_headers_and_needs_no_inline_code(world: Any, pages: Any) -> None:
    clients = {
        "clinician": sign_in_as(Client(), world.doctor),
        "patient": sign_in_as(Client(), world.alice_user),
        "admin": sign_in_as(Client(), world.admin),
        "anonymous": Client(),
    }
    for role, urls in pages.items():
        for url in urls:
            _check(clients[role].get(url, secure=True), url)


def test_the_admin_pages_send_the_same_headers(world: Any) -> None:
    from neonpro.accounts.services import ensure_administrators_group

    world.admin.groups.add(ensure_administrators_group())
    client = sign_in_as(Client(), world.admin)
    for url in ("/admin/", "/admin/security/dashboard/", "/admin/audit/auditevent/"):
        answer = client.get(url, secure=True)
        assert answer.status_code == 200, url
        assert "unsafe-inline" not in answer["Content-Security-Policy"] and answer["Cache-Control"] == "no-store"
        assert answer["X-Frame-Options"] == "DENY"

"""What every page shares: the layout's role navigation and unread badge, the idle-warning
timing, "Stay signed in", the notifications page, one 404 page, and the page helpers."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.test import Client, RequestFactory

from neonpro.security.web import NOT_FOUND, not_found_as_404, role_required, show_service_errors
from tests.conftest import sign_in_as

pytestmark = pytest.mark.django_db


def _signed_in(user: Any) -> Client:
    return sign_in_as(Client(), user)


def _notify(user: Any, kind: str = "break_glass", **details: Any) -> Any:
    from neonpro.accounts.services import notify_user

    return notify_user(user, kind=kind, details=details)


def test_each_role_starts_where_its_work_is(world: Any) -> None:
    assert _signed_in(world.doctor).get("/", secure=True)["Location"] == "/patients/"
    assert _signed_in(world.alice_user).get("/", secure=True)["Location"] == "/portal/"
    home = _signed_in(world.admin).get("/", secure=True)
    assert home.status_code == 200 and b"security dashboard" in home.content
    assert Client().get("/", secure=True)["Location"].startswith("/accounts/login/")


def test_the_layout_names_the_pages_of_the_role_and_times_the_idle_warning(world: Any, settings: Any) -> None:
    settings.NEONPRO_SESSION_IDLE_MINUTES = 15
    settings.NEONPRO_SESSION_WARN_SECONDS = 120
    page = _signed_in(world.doctor).get("/notifications/", secure=True).content.decode()
    assert 'href="/patients/"' in page and 'href="/patients/search/"' in page and 'href="/portal/"' not in page
    assert 'data-idle-seconds="900"' in page and 'data-warn-seconds="120"' in page
    assert 'data-keepalive-url="/accounts/sessions/keepalive/"' in page and 'id="idle-warning"' in page
    portal = _signed_in(world.alice_user).get("/notifications/", secure=True).content.decode()
    assert 'href="/portal/"' in portal and 'href="/patients/"' not in portal

    settings.NEONPRO_SESSION_IDLE_SECONDS = 30  # a short idle time warns within its half
    page = _signed_in(world.doctor).get("/notifications/", secure=True).content.decode()
    assert 'data-idle-seconds="30"' in page and 'data-warn-seconds="15"' in page


def test_signed_out_pages_carry_no_idle_timer(db: None) -> None:
    page = Client().get("/accounts/login/", secure=True).content.decode()
    assert "data-idle-seconds" not in page and 'id="idle-warning"' not in page
    assert "signed out after a time" not in page
    idle = Client().get("/accounts/login/?idle=1", secure=True).content.decode()
    assert 'id="signed-out-idle"' in idle


def test_stay_signed_in_is_a_post_that_answers_whether_the_session_lives(world: Any) -> None:
    client = _signed_in(world.doctor)
    kept = client.post("/accounts/sessions/keepalive/", secure=True)
    assert kept.status_code == 200 and kept.json()["signed_in"] is True and kept.json()["idle_seconds"] > 0
    assert client.get("/accounts/sessions/keepalive/", secure=True).status_code == 405
    gone = Client().post("/accounts/sessions/keepalive/", secure=True)
    assert gone.status_code == 401 and gone.json() == {"signed_in": False}


def test_notifications_show_unread_ones_and_are_marked_read(world: Any) -> None:
    from neonpro.accounts.models import Notification

    first = _notify(world.admin, grant=uuid.uuid4(), patient=uuid.uuid4())
    second = _notify(world.admin, kind="something_new")
    _notify(world.doctor)  # someone else's
    client = _signed_in(world.admin)

    page = client.get("/notifications/", secure=True).content.decode()
    assert '<span class="badge" aria-label="2 unread">2</span>' in page
    assert "A clinician used emergency access" in page and "something_new" in page
    assert page.count('class="unread"') == 2
    assert str(first.details["patient"]) not in page  # ids of patients are not shown

    assert client.post(f"/notifications/{first.pk}/read/", secure=True)["Location"] == "/notifications/"
    first.refresh_from_db()
    assert first.read_at is not None and Notification.objects.get(pk=second.pk).read_at is None
    done = client.post("/notifications/read-all/", secure=True, follow=True).content.decode()
    assert "Marked 1 notice read." in done and 'class="badge"' not in done.split("</header>")[0]
    assert Notification.objects.filter(recipient=world.doctor, read_at__isnull=True).count() == 1
    assert client.post(f"/notifications/{uuid.uuid4()}/read/", secure=True).status_code == 302  # nothing to mark


def test_a_privacy_officer_is_linked_to_the_use_to_review(world: Any, user_factory: Any) -> None:
    from neonpro.accounts.services import ensure_privacy_officers_group

    officer = user_factory("admin", username="privacy1", is_staff=True)
    officer.groups.add(ensure_privacy_officers_group())
    grant = uuid.uuid4()
    _notify(officer, grant=grant)
    _notify(world.admin, grant=grant)
    assert (
        f"/admin/patients/emergencyaccessgrant/{grant}/change/"
        in _signed_in(officer).get("/notifications/", secure=True).content.decode()
    )
    plain_admin = _signed_in(world.admin).get("/notifications/", secure=True).content.decode()
    assert "Review the use" not in plain_admin  # an administrator without the review permission


def test_an_empty_notifications_page_says_so(world: Any) -> None:
    page = _signed_in(world.doctor).get("/notifications/", secure=True).content.decode()
    assert "Nothing to tell you." in page and "Mark all read" not in page


def test_every_unknown_page_is_the_one_not_found_page(world: Any) -> None:
    anonymous = Client().get("/no/such/page/", secure=True)
    signed_in = _signed_in(world.doctor).get("/no/such/page/", secure=True)
    for answer in (anonymous, signed_in):
        assert answer.status_code == 404 and b"<h1>Not found</h1>" in answer.content
        assert answer["Cache-Control"] == "no-store" and "frame-ancestors 'none'" in answer["Content-Security-Policy"]


def test_the_error_pages_render_without_a_request(db: None) -> None:
    from django.template.loader import render_to_string

    assert "Something went wrong" in render_to_string("500.html")
    assert "Not allowed" in render_to_string("403.html")


class _Form(forms.Form):
    name = forms.CharField()


def _view(role: str) -> Any:
    @role_required(role)
    @not_found_as_404
    def view(request: Any, missing: bool = False) -> HttpResponse:
        if missing:
            from patients.models import Patient

            raise Patient.DoesNotExist("No patient with that id.")
        return HttpResponse("ok")

    return view


def test_role_required_and_not_found_as_404(world: Any) -> None:
    from django.contrib.auth.models import AnonymousUser
    from django.core.exceptions import PermissionDenied
    from django.http import Http404

    from neonpro.security.context import acting_as, identity_for_user

    request = RequestFactory().get("/somewhere/?x=1")
    request.user = AnonymousUser()
    assert _view("clinician")(request)["Location"] == "/accounts/login/?next=/somewhere/%3Fx%3D1"
    request.user = world.doctor
    with acting_as(identity_for_user(world.doctor)):
        assert _view("clinician")(request).content == b"ok"
        with pytest.raises(PermissionDenied):
            _view("patient")(request)
        with pytest.raises(Http404) as missing:
            _view("clinician")(request, missing=True)
    assert str(missing.value) == NOT_FOUND


def test_service_errors_land_next_to_their_fields() -> None:
    form = _Form({"name": "x"})
    assert form.is_valid()
    show_service_errors(form, ValidationError({"name": "Too short.", "elsewhere": ["Not yours.", "Nor this."]}))
    assert form.errors["name"] == ["Too short."]
    assert form.non_field_errors() == ["Not yours.", "Nor this."]
    plain = _Form({"name": "x"})
    plain.is_valid()
    show_service_errors(plain, ValidationError("Nothing to change."))
    assert plain.non_field_errors() == ["Nothing to change."]


def test_a_page_the_role_may_not_open_is_refused_and_audited(world: Any) -> None:
    from neonpro.audit.models import AuditEvent

    answer = _signed_in(world.alice_user).get(f"/patients/{world.alice.pk}/", secure=True)

    assert answer.status_code == 403 and b"The attempt has been recorded" in answer.content
    event = AuditEvent.objects.filter(action="page.denied").latest("id")
    assert event.outcome == "denied" and event.actor_id == world.alice_user.pk and event.resource_id == world.alice.pk
    assert event.details == {"refused": "role", "method": "GET", "view": "patients:chart"}
    assert Client().get("/patients/", secure=True).status_code == 302  # signed out: the sign-in page, no event


def test_a_write_refused_under_emergency_access_is_audited(world: Any) -> None:
    import datetime as dt

    from django.utils import timezone

    from neonpro.audit.models import AuditEvent
    from neonpro.security.context import system_context
    from patients.models import EmergencyAccessGrant

    with system_context("test grant"):
        EmergencyAccessGrant.objects.create(
            clinician=world.outsider,
            patient=world.alice,
            reason="Unconscious, care team unreachable at night",
            expires_at=timezone.now() + dt.timedelta(hours=1),
        )
    client = _signed_in(world.outsider)
    page = client.post(
        f"/patients/{world.alice.pk}/appointments/new/",
        {"scheduled_at": "2031-05-05T10:00", "duration_minutes": "30", "reason": ""},
        secure=True,
    )
    assert page.status_code == 403  # read-only: the service refused, nothing was booked
    (denied,) = AuditEvent.objects.filter(action="page.denied", actor_id=world.outsider.pk)
    assert denied.outcome == "denied" and denied.details == {"refused": "permission"}


def test_the_chart_lists_every_recorded_allergy_not_only_this_pages(world: Any) -> None:
    import datetime as dt

    from neonpro.audit.models import AuditEvent
    from neonpro.security.context import system_context
    from records.models import MedicalRecord

    with system_context("test records"):
        MedicalRecord.objects.create(
            patient=world.alice, provider=world.doctor, record_date=dt.date(2020, 1, 1), allergies="Penicillin (rash)"
        )
        MedicalRecord.objects.create(patient=world.alice, provider=world.doctor, diagnosis="Sprain", medications="")
    page = _signed_in(world.doctor).get(f"/patients/{world.alice.pk}/?page_size=1", secure=True).content.decode()

    assert "Sprain" in page and "Penicillin (rash)" in page  # the older record is on the next page only
    summary = AuditEvent.objects.filter(action="record.summary", patient_id=world.alice.pk).latest("id")
    assert summary.purpose == "treatment" and summary.details == {"count": 1, "fields": ["allergies", "medications"]}


def test_a_refusal_before_any_view_was_resolved_is_audited_too(world: Any) -> None:
    from neonpro.audit.models import AuditEvent
    from neonpro.security.context import acting_as, identity_for_user
    from neonpro.security.web import audit_refusal

    request = RequestFactory().post("/anywhere/")  # a middleware's refusal: no resolver match yet
    with acting_as(identity_for_user(world.doctor)):
        audit_refusal(request)
    event = AuditEvent.objects.filter(action="page.denied").latest("id")
    assert event.details == {"refused": "permission", "method": "POST"} and event.resource_id is None

"""The clinician's patient pages: "My patients", "Find a patient", the chart, revealing an SSN,
break-glass and its banner — through the test client, on real PostgreSQL with RLS."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from neonpro.audit.models import AuditEvent
from neonpro.security.context import system_context
from patients import services
from patients.models import EmergencyAccessGrant
from patients.views import lab_rows
from records.models import Appointment, MedicalRecord
from records.services import next_appointments
from tests.accounts.agentkit import bearer, make_agent, token_for
from tests.accounts.signin_helpers import PASSWORD, browser_client, code, enrol, post_form
from tests.conftest import as_identity, sign_in_as

pytestmark = pytest.mark.django_db
REASON = "Unconscious in the emergency department, no care-team clinician reachable"
SESSION_COOKIE = "__Host-sessionid"
_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"')


def _client(user: Any, *, reauthenticated: bool = True) -> Client:
    return sign_in_as(Client(), user, reauthenticated=reauthenticated)


def _get(client: Client, url: str) -> Any:
    return client.get(url, secure=True)


def _post(client: Client, url: str, data: dict[str, Any] | None = None) -> Any:
    return client.post(url, data or {}, secure=True)


def _text(response: Any) -> str:
    return str(response.content.decode())


def _events(action: str, **filters: Any) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, **filters).order_by("occurred_at"))


def _record(patient: Any, provider: Any, days_ago: int, **fields: Any) -> MedicalRecord:
    with system_context("test record"):
        return MedicalRecord.objects.create(
            patient=patient, provider=provider, record_date=timezone.localdate() - dt.timedelta(days=days_ago), **fields
        )


def _appointment(patient: Any, provider: Any, *, days: float, status: str = "confirmed", **fields: Any) -> Appointment:
    with system_context("test appointment"):
        return Appointment.objects.create(
            patient=patient,
            provider=provider,
            scheduled_at=timezone.now().replace(microsecond=0) + dt.timedelta(days=days),
            status=status,
            **fields,
        )


def _grant(clinician: Any, patient: Any, minutes: int = 30) -> EmergencyAccessGrant:
    from patients.break_glass import request_emergency_access

    with as_identity(clinician) as identity:
        return request_emergency_access(identity, patient_id=patient.pk, reason=REASON, minutes=minutes)


# -- Who may open the pages ---------------------------------------------------------------


def _pages(world: Any) -> list[tuple[str, str]]:
    chart = f"/patients/{world.alice.pk}/"
    return [
        ("get", "/patients/"),
        ("get", "/patients/search/"),
        ("post", "/patients/search/"),
        ("get", chart),
        ("post", f"{chart}reveal-ssn/"),
        ("get", f"{chart}emergency-access/"),
        ("get", "/patients/emergency-access/"),
        ("post", f"/patients/emergency-access/{uuid.uuid4()}/end/"),
    ]


@pytest.mark.parametrize("who", ["alice_user", "admin", "agent"])
def test_other_roles_get_the_403_page(world: Any, who: str) -> None:
    user = make_agent("chart-agent", care_team_of=world.doctor) if who == "agent" else getattr(world, who)
    client = _client(user)
    for method, url in _pages(world):
        response = getattr(client, method)(url, secure=True)
        assert response.status_code == 403, (method, url)
        assert "Not allowed" in _text(response) and "Alice" not in _text(response)


def test_an_agent_token_opens_no_page_and_the_signed_out_go_to_sign_in(world: Any) -> None:
    agent = make_agent("chart-token-agent", care_team_of=world.doctor)
    headers = bearer(token_for(agent))
    for method, url in _pages(world):
        with_token = getattr(Client(), method)(url, secure=True, **headers)
        assert with_token.status_code == 302 and with_token["Location"].startswith("/accounts/login/"), url
        assert getattr(Client(), method)(url, secure=True).status_code == 302


# -- My patients ----------------------------------------------------------------------------


def test_my_patients_lists_the_care_team_with_the_next_appointment(world: Any) -> None:
    _appointment(world.alice, world.doctor, days=-1)  # past
    _appointment(world.alice, world.doctor, days=1, status="cancelled")
    soonest = _appointment(world.alice, world.doctor, days=2, status="requested")
    _appointment(world.alice, world.doctor, days=5)
    _appointment(world.bob, world.doctor, days=1)  # not the doctor's patient

    response = _get(_client(world.doctor), "/patients/")

    page = _text(response)
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    assert "Alice Canary" in page and world.alice.mrn in page and world.alice.date_of_birth.isoformat() in page
    assert "Bob Canary" not in page
    assert f'datetime="{soonest.scheduled_at.isoformat()}"' in page and "Requested" in page
    assert f'href="/patients/{world.alice.pk}/"' in page
    assert 'action="/patients/search/"' in page, "the Find a patient form is on the page"
    assert _events("patient.list")[-1].details["count"] == 1
    assert _events("appointment.list")[-1].details["ids"] == [str(soonest.pk)]


def test_my_patients_pages_with_the_cursor_the_service_gives(world: Any, patient_factory: Any, care_team: Any) -> None:
    for _ in range(2):
        care_team(patient_factory(), world.doctor)
    client = _client(world.doctor)

    first = _text(_get(client, "/patients/?page_size=2"))
    next_url = re.search(r'href="([^"]+)" rel="next"', first)
    assert next_url and "cursor=" in next_url[1] and "None booked" in first
    second = _text(_get(client, next_url[1].replace("&amp;", "&")))
    assert "Alice Canary" in second and 'rel="next"' not in second

    stale = _get(client, "/patients/?cursor=c1.not-ours")
    assert stale.status_code == 302 and stale["Location"] == "/patients/"
    assert "no longer valid" in _text(_get(client, "/patients/"))


def test_next_appointments_is_one_query_and_nothing_for_no_patients(world: Any, patient_factory: Any) -> None:
    others = [patient_factory() for _ in range(3)]
    for patient in [world.alice, *others]:
        _appointment(patient, world.doctor, days=3)
    with as_identity(world.doctor) as identity:
        assert next_appointments(identity, []) == {}
        with CaptureQueriesContext(connection) as queries:
            found = next_appointments(identity, [world.alice.pk, *(p.pk for p in others)])
    assert set(found) == {world.alice.pk}, "only the patients the clinician may see"
    assert len([q for q in queries.captured_queries if "records_appointment" in q["sql"]]) == 1


# -- Find a patient ---------------------------------------------------------------------------


def test_the_search_form_has_labelled_fields(world: Any) -> None:
    page = _text(_get(_client(world.doctor), "/patients/search/"))
    assert '<label for="id_field">Search by</label>' in page and '<label for="id_value">Value</label>' in page
    assert 'method="post" action="/patients/search/"' in page


def test_a_search_normalises_and_answers_in_the_post_response(world: Any, patient_factory: Any, care_team: Any) -> None:
    dashed = patient_factory(full_name="Dash Canary", ssn="123-45-6789")
    care_team(dashed, world.doctor)

    response = _post(_client(world.doctor), "/patients/search/", {"field": "ssn", "value": " 123456789 "})

    page = _text(response)
    assert response.status_code == 200, "the results are this POST's answer, not a redirect"
    assert "Dash Canary" in page and f'href="/patients/{dashed.pk}/"' in page and "1 patient in your care" in page
    assert "123-45-6789" not in page, "the SSN is not shown in results"
    event = _events("patient.search")[-1]
    assert event.details == {"field": "ssn", "count": 1, "ids": [str(dashed.pk)]}, "the value is never audited"


def test_search_errors_are_next_to_their_fields(world: Any) -> None:
    client = _client(world.doctor)

    empty = _text(_post(client, "/patients/search/", {"field": "ssn", "value": "  "}))
    assert re.search(r'<ul class="errorlist" id="id_value_error"><li>Enter the value to search for', empty)
    assert 'class="field invalid"' in empty and "Results" not in empty

    wrong = _text(_post(client, "/patients/search/", {"field": "full_name", "value": "Alice"}))
    assert '<ul class="errorlist" id="id_field_error"><li>Select a valid choice.' in wrong


def test_a_search_outside_the_care_team_finds_nobody_and_offers_break_glass(world: Any) -> None:
    response = _post(_client(world.doctor), "/patients/search/", {"field": "ssn", "value": world.bob.ssn})

    page = _text(response)
    assert "Bob Canary" not in page and "No patient in your care has that SSN" in page
    assert _events("patient.search")[-1].details["count"] == 0, "row-level security hides them"
    dialog = page.split('<dialog id="emergency-dialog"')[1].split("</dialog>")[0]
    assert 'action="/patients/emergency-access/"' in dialog and 'method="post"' in dialog
    assert f'name="value" value="{world.bob.ssn}"' in dialog and 'name="identifier" value="ssn"' in dialog
    assert 'data-opens="emergency-dialog"' in page

    stale_client = _client(world.doctor, reauthenticated=False)
    stale = _text(_post(stale_client, "/patients/search/", {"field": "ssn", "value": "1"}))
    assert "emergency-dialog" not in stale and "confirm your password and code first" in stale


# -- The chart -------------------------------------------------------------------------------


def test_the_chart_shows_demographics_timeline_summaries_and_appointments(world: Any) -> None:
    older = _record(world.alice, world.doctor, 40, diagnosis="Asthma", medications="Salbutamol", allergies="Penicillin")
    newer = _record(
        world.alice,
        world.doctor,
        3,
        diagnosis="Seasonal rhinitis",
        treatment_plan="Review in 3 months",
        medications="Cetirizine 10 mg",
        lab_results={"eosinophils": {"value": 0.4, "unit": "10^9/L"}, "hba1c": 7.9},
        notes="Seen with her mother.",
    )
    requested = _appointment(world.alice, world.doctor, days=2, status="requested", reason="Check-up")
    confirmed = _appointment(world.alice, world.doctor, days=4)
    world.doctor.first_name, world.doctor.last_name = "Greg", "Care"
    world.doctor.save()

    response = _get(_client(world.doctor), f"/patients/{world.alice.pk}/")

    page = _text(response)
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    assert "Alice Canary" in page and "***-**-0001" in page and world.alice.ssn not in page
    assert page.index("Seasonal rhinitis") < page.index("Asthma"), "newest first"
    assert "Greg Care" in page and "Review in 3 months" in page and "Seen with her mother." in page
    assert "<td>eosinophils</td><td>0.4</td><td>10^9/L</td>" in page and "<td>hba1c</td><td>7.9</td><td></td>" in page
    medications = page.split('id="medications-title"')[1].split("</section>")[0]
    assert "Cetirizine 10 mg" in medications and "Salbutamol" in medications
    allergies = page.split('id="allergies-title"')[1].split("</section>")[0]
    assert "Penicillin" in allergies and "None recorded." not in allergies
    for record in (older, newer):
        assert f'href="/records/{record.pk}/"' in page and f'href="/records/{record.pk}/edit/"' in page
    assert f'href="/patients/{world.alice.pk}/records/new/"' in page
    assert f'href="/patients/{world.alice.pk}/appointments/new/"' in page
    assert f'action="/appointments/{requested.pk}/confirm/"' in page
    assert f'action="/appointments/{confirmed.pk}/confirm/"' not in page, "a confirmed one is not confirmed again"
    for appointment in (requested, confirmed):
        assert f'href="/appointments/{appointment.pk}/reschedule/"' in page
        assert f'action="/appointments/{appointment.pk}/cancel/"' in page
    assert "Check-up" in page and "Requested" in page and "Confirmed" in page
    assert 'class="banner emergency"' not in page


def test_reading_the_chart_is_audited_with_its_purpose(world: Any) -> None:
    _get(_client(world.doctor), f"/patients/{world.alice.pk}/")

    (read,) = _events("patient.read", resource_id=world.alice.pk)
    assert read.purpose == "treatment" and read.outcome == "success"
    assert _events("record.list", patient_id=world.alice.pk)[-1].purpose == "treatment"
    assert _events("appointment.list", patient_id=world.alice.pk)[-1].purpose == "treatment"


def test_the_timeline_pages_and_a_bad_cursor_starts_again(world: Any) -> None:
    for days in (1, 2, 3):
        _record(world.alice, world.doctor, days, diagnosis=f"Visit {days}")
    client = _client(world.doctor)

    first = _text(_get(client, f"/patients/{world.alice.pk}/?page_size=2"))
    older = re.search(r'href="([^"]+)" rel="next">Older records', first)
    assert older and "Visit 3" not in first
    assert "Visit 3" in _text(_get(client, older[1].replace("&amp;", "&")))

    bad = _get(client, f"/patients/{world.alice.pk}/?cursor=c1.nope")
    assert bad.status_code == 302 and bad["Location"] == f"/patients/{world.alice.pk}/"


def _normalised(response: Any, pk: Any) -> str:
    return _CSRF.sub("csrf", _text(response)).replace(str(pk), "<id>")


def test_a_patient_outside_the_care_team_is_the_same_404_as_an_unknown_id(world: Any) -> None:
    client = _client(world.doctor)
    unknown = uuid.uuid4()

    outside = _get(client, f"/patients/{world.bob.pk}/")
    missing = _get(client, f"/patients/{unknown}/")

    assert outside.status_code == missing.status_code == 404
    assert _normalised(outside, world.bob.pk) == _normalised(missing, unknown)
    assert "Bob" not in _text(outside) and "Not found" in _text(outside)
    assert f'href="/patients/{unknown}/emergency-access/"' in _text(missing), "offered for every id alike"
    denied = _events("patient.read", outcome="denied")
    assert {e.resource_id for e in denied} == {world.bob.pk, unknown}


def test_the_404_offers_the_dialog_only_after_a_recent_reauthentication(world: Any) -> None:
    fresh = _text(_get(_client(world.doctor), f"/patients/{world.bob.pk}/"))
    assert '<a class="button danger" href="/patients/' in fresh and 'data-opens="emergency-dialog"' in fresh
    assert f'<form method="post" action="/patients/{world.bob.pk}/emergency-access/">' in fresh
    assert '<label for="emergency_reason">Reason for emergency access</label>' in fresh

    stale = _text(_get(_client(world.doctor, reauthenticated=False), f"/patients/{world.bob.pk}/"))
    assert "emergency-dialog" not in stale and f'href="/patients/{world.bob.pk}/emergency-access/"' in stale


# -- Revealing the SSN -----------------------------------------------------------------------


def test_revealing_the_ssn_is_a_post_answered_with_the_chart(world: Any) -> None:
    client = _client(world.doctor)

    response = _post(client, f"/patients/{world.alice.pk}/reveal-ssn/")

    page = _text(response)
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    assert f'<span id="ssn">{world.alice.ssn}</span>' in page and "Alice Canary" in page
    assert "revealing it was recorded" in page and f'href="/patients/{world.alice.pk}/">Hide' in page
    (event,) = _events("patient.reveal_ssn")
    assert event.purpose == "treatment" and event.resource_id == world.alice.pk and event.details == {}
    assert world.alice.ssn not in str(AuditEvent.objects.values_list("details", flat=True)[:100])
    assert world.alice.ssn not in _text(_get(client, f"/patients/{world.alice.pk}/")), "not kept"
    assert _get(client, f"/patients/{world.alice.pk}/reveal-ssn/").status_code == 405


def test_revealing_outside_the_care_team_is_the_404_and_no_ssn_shows_none(
    world: Any, patient_factory: Any, care_team: Any
) -> None:
    client = _client(world.doctor)
    outside = _post(client, f"/patients/{world.bob.pk}/reveal-ssn/")
    assert outside.status_code == 404 and world.bob.ssn not in _text(outside)
    assert _events("patient.reveal_ssn")[-1].outcome == "denied"

    nameless = patient_factory(ssn=None)
    care_team(nameless, world.doctor)
    assert "None on file" in _text(_post(client, f"/patients/{nameless.pk}/reveal-ssn/"))


def test_reveal_ssn_is_for_clinicians_only(world: Any) -> None:
    with as_identity(world.alice_user) as identity, pytest.raises(PermissionDenied):
        services.reveal_ssn(identity, world.alice.pk)


# -- Break-glass -------------------------------------------------------------------------------


def test_break_glass_needs_a_reauthentication_then_grants_and_shows_the_banner(world: Any) -> None:
    device = enrol(world.outsider)
    client = sign_in_as(browser_client(), world.outsider, reauthenticated=False)
    page_url = f"/patients/{world.bob.pk}/emergency-access/"

    sent = client.get(page_url, secure=True)
    assert sent.status_code == 302 and sent["Location"] == f"/accounts/reauth/?next={page_url.replace('/', '%2F')}"
    back = post_form(client, "/accounts/reauth/", {"password": PASSWORD, "token": code(device), "next": page_url})
    assert back.status_code == 302 and back["Location"] == page_url
    form = client.get(page_url, secure=True)
    assert form.status_code == 200 and '<label for="emergency_reason">' in _text(form)
    before = client.cookies[SESSION_COOKIE].value

    granted = post_form(client, page_url, {"reason": REASON, "minutes": "30"})

    assert granted.status_code == 302 and granted["Location"] == f"/patients/{world.bob.pk}/"
    assert client.cookies[SESSION_COOKIE].value != before, "a new session id after the elevation"
    chart = _text(client.get(granted["Location"], secure=True))
    banner = re.search(r'<div class="banner emergency" role="alert">(.*?)</div>', chart, re.S)
    assert banner and re.search(
        r"Emergency access — read-only — until \d\d:\d\d UTC \((30|29) minutes left\)", banner[1]
    )
    with system_context("test: the grant"):
        grant = EmergencyAccessGrant.objects.get(clinician=world.outsider)
    assert grant.expires_at.astimezone(dt.UTC).strftime("%H:%M") in banner[1]
    assert f'action="/patients/emergency-access/{grant.pk}/end/"' in banner[1] and "End emergency access" in banner[1]
    assert "Bob Canary" in chart and "Emergency access granted" in chart
    for link in ("/records/new/", "/appointments/new/", "/edit/", "/cancel/", "/confirm/", "/reschedule/"):
        assert link not in chart, f"read-only: no {link} in emergency mode"
    assert _events("patient.read", resource_id=world.bob.pk)[-1].purpose == "emergency"


def test_under_a_grant_the_ssn_stays_masked_and_the_attempt_is_audited(world: Any) -> None:
    _grant(world.outsider, world.bob)
    client = _client(world.outsider)
    chart = _text(_get(client, f"/patients/{world.bob.pk}/"))
    assert 'id="reveal-ssn"' not in chart and "***-**-" in chart  # no button in emergency mode

    answer = _post(client, f"/patients/{world.bob.pk}/reveal-ssn/")
    assert answer.status_code == 302 and answer["Location"] == f"/patients/{world.bob.pk}/"
    page = _text(client.get(answer["Location"], secure=True))
    assert world.bob.ssn not in page and "only the care team reveals it" in page
    assert 'class="banner emergency"' in page
    (event,) = _events("patient.reveal_ssn")
    assert (event.outcome, event.purpose, event.details) == ("denied", "emergency", {})
    assert _events("record.list", patient_id=world.bob.pk)[-1].purpose == "emergency"


def test_break_glass_errors_are_next_to_their_fields(world: Any) -> None:
    client = _client(world.outsider)
    url = f"/patients/{world.bob.pk}/emergency-access/"

    short = _text(_post(client, url, {"reason": "too short", "minutes": ""}))
    assert re.search(r'id="emergency_reason_error"><li>Describe the emergency in at least 20 characters', short)
    not_a_number = _text(_post(client, url, {"reason": REASON, "minutes": "soon"}))
    assert 'id="emergency_minutes_error"><li>Enter a whole number.' in not_a_number
    too_long = _text(_post(client, url, {"reason": REASON, "minutes": "2000"}))
    assert 'id="emergency_minutes_error"><li>Emergency access lasts between 1 minute and 24 hours.' in too_long
    with system_context("test: no grant"):
        assert not EmergencyAccessGrant.objects.filter(clinician=world.outsider).exists()


def test_break_glass_refusals_are_shown(world: Any, patient_factory: Any, settings: Any) -> None:
    client = _client(world.outsider)
    url = f"/patients/{world.bob.pk}/emergency-access/"
    assert _post(client, url, {"reason": REASON}).status_code == 302

    again = _post(client, url, {"reason": REASON})
    assert again.status_code == 409
    assert "does not stack" in _text(again) and "lasts until" in _text(again)
    assert f'href="/patients/{world.bob.pk}/">Open the chart' in _text(again)

    settings.NEONPRO_BREAK_GLASS_PER_HOUR = 1
    limited = _post(client, f"/patients/{patient_factory().pk}/emergency-access/", {"reason": REASON})
    assert limited.status_code == 429 and "limited to 1 an hour" in _text(limited)
    assert 'role="alert"' in _text(limited)


def test_break_glass_on_an_unknown_id_is_a_404(world: Any) -> None:
    response = _post(_client(world.outsider), f"/patients/{uuid.uuid4()}/emergency-access/", {"reason": REASON})
    assert response.status_code == 404
    assert _events("break_glass.start", outcome="denied")[-1].details["refused"] == "unknown_patient"


def test_ending_emergency_access(world: Any) -> None:
    grant = _grant(world.outsider, world.bob)
    client = _client(world.outsider)

    ended = _post(client, f"/patients/emergency-access/{grant.pk}/end/")

    assert ended.status_code == 302 and ended["Location"] == "/patients/"
    assert "Emergency access ended." in _text(_get(client, "/patients/"))
    assert _get(client, f"/patients/{world.bob.pk}/").status_code == 404
    assert _events("break_glass.stop")[-1].resource_id == grant.pk
    assert _post(_client(world.doctor), f"/patients/emergency-access/{grant.pk}/end/").status_code == 404
    assert _get(client, f"/patients/emergency-access/{grant.pk}/end/").status_code == 405


def test_break_glass_by_identifier_from_the_search(world: Any) -> None:
    client = _client(world.outsider)
    digits = world.bob.ssn.replace("-", "")

    granted = _post(client, "/patients/emergency-access/", {"identifier": "ssn", "value": digits, "reason": REASON})

    assert granted.status_code == 302 and granted["Location"] == f"/patients/{world.bob.pk}/"
    assert _events("patient.search", purpose="emergency")[-1].details["for"] == "break_glass"
    already = _post(client, "/patients/emergency-access/", {"identifier": "ssn", "value": digits, "reason": REASON})
    assert already.status_code == 409 and 'href="/patients/">Find them in My patients' in _text(already)


def test_break_glass_by_identifier_refusals(world: Any, settings: Any) -> None:
    client = _client(world.outsider)
    url = "/patients/emergency-access/"

    page = _text(_get(client, url))
    assert '<label for="emergency_identifier">Identifier</label>' in page and 'name="value"' in page
    nobody = _post(client, url, {"identifier": "mrn", "value": "NO-SUCH-MRN", "reason": REASON})
    assert nobody.status_code == 404 and "No single patient has that identifier" in _text(nobody)
    assert 'value="NO-SUCH-MRN"' in _text(nobody), "kept in the form (a POST body), for a correction"
    empty = _text(_post(client, url, {"identifier": "mrn", "value": "", "reason": REASON}))
    assert 'id="emergency_value_error"><li>Enter the identifier' in empty
    settings.NEONPRO_BREAK_GLASS_PER_HOUR = 1  # the unknown MRN counted
    limited = _post(client, url, {"identifier": "ssn", "value": world.bob.ssn, "reason": REASON})
    assert limited.status_code == 429 and "try again in" in _text(limited)
    assert _get(_client(world.outsider, reauthenticated=False), url).status_code == 302


# -- Small pieces ------------------------------------------------------------------------------


def test_emergency_grant_is_only_for_clinicians_off_the_care_team(world: Any) -> None:
    import datetime as dt

    from django.utils import timezone

    with system_context("a grant from before the doctor joined the care team"):
        EmergencyAccessGrant.objects.create(
            clinician=world.doctor,
            patient=world.alice,
            reason=REASON,
            expires_at=timezone.now() + dt.timedelta(hours=1),
        )
    with as_identity(world.doctor) as identity:
        assert services.emergency_grant(identity, world.alice.pk) is None
    with as_identity(world.alice_user) as identity:
        assert services.emergency_grant(identity, world.alice.pk) is None


def test_lab_rows() -> None:
    assert lab_rows(None) == [] and lab_rows({}) == []
    rows = lab_rows({"fev1": 71, "na": {"value": 140, "unit": "mmol/L"}})
    assert rows == [("fev1", "71", ""), ("na", "140", "mmol/L")]
    assert lab_rows(["free text"]) == [("", "['free text']", "")]


def test_a_patient_listed_through_a_grant_is_audited_as_an_emergency_read(world: Any) -> None:
    _grant(world.outsider, world.bob)
    page = _text(_get(_client(world.outsider), "/patients/"))

    assert "Bob Canary" in page
    (event,) = [e for e in _events("patient.list") if e.patient_id == world.bob.pk]
    assert (event.purpose, event.resource_id) == ("emergency", world.bob.pk)
    _get(_client(world.doctor), "/patients/")  # on the care team: no emergency event
    assert not [e for e in _events("patient.list") if e.patient_id == world.alice.pk]


def test_break_glass_for_a_patient_in_ones_care_is_refused_and_audited(world: Any) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        _grant(world.doctor, world.alice)
    assert "in your care already" in str(refused.value.message_dict["patient"])
    with system_context("count"):
        assert not EmergencyAccessGrant.objects.filter(clinician=world.doctor).exists()
    (event,) = _events("break_glass.start", outcome="denied", patient_id=world.alice.pk)
    assert event.details == {"refused": "care_team"} and event.purpose == "emergency"

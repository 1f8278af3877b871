"""Administrators add clinicians to care teams and end memberships in the admin, through
patients.services (audited, the administrator the actor), picking the patient by id only."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone

from neonpro.accounts.services import ensure_administrators_group
from neonpro.audit.models import AuditEvent
from neonpro.security.context import system_context
from patients.models import CareTeamMembership
from tests.conftest import sign_in_as

pytestmark = pytest.mark.django_db
ADD = "/admin/patients/careteammembership/add/"
LIST = "/admin/patients/careteammembership/"


def _client(user: Any) -> Client:
    user.groups.add(ensure_administrators_group())
    client = Client()
    sign_in_as(client, user)
    return client


def _memberships(**filters: Any) -> list[CareTeamMembership]:
    with system_context("test: check the care teams"):
        return list(CareTeamMembership._plain.filter(**filters))


def _errors_of(page: str) -> str:
    return " ".join(part.split("</ul>")[0] for part in page.split('<ul class="errorlist')[1:])


def test_the_add_form_asks_for_a_patient_id_and_a_username(world: Any) -> None:
    page = _client(world.admin).get(ADD, {"patient": str(world.bob.pk)}, secure=True).content.decode()
    assert '<label for="id_patient">Patient id:</label>' in page
    assert f'value="{world.bob.pk}"' in page, "prefilled from ?patient="
    assert '<label for="id_clinician">Clinician&#x27;s username:</label>' in page
    assert 'type="date"' in page and "<select" not in page
    for phi in (world.bob.full_name, world.alice.full_name, world.bob.mrn, world.bob.ssn):
        assert phi not in page


def test_an_administrator_adds_a_clinician_through_the_service(world: Any) -> None:
    client = _client(world.admin)
    response = client.post(
        ADD, {"patient": str(world.bob.pk), "clinician": world.outsider.username, "starts_on": ""}, secure=True
    )
    assert (response.status_code, response["Location"]) == (302, LIST)
    [membership] = _memberships(patient=world.bob, clinician=world.outsider)
    assert membership.starts_on == timezone.localdate() and membership.ends_on is None
    message = [str(m) for m in get_messages(response.wsgi_request)]
    assert message == [f"Care-team membership {membership.pk} created."]
    event = AuditEvent.objects.get(action="careteam.add", resource_id=membership.pk)
    assert (event.actor_id, event.actor_role, event.patient_id) == (world.admin.pk, "admin", world.bob.pk)
    assert event.details == {"clinician": str(world.outsider.pk)}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"clinician": "nobody.here"}, "No active account has this username."),
        ({"clinician": "alice"}, "Care teams are made of clinicians."),
        ({"patient": "00000000-0000-4000-8000-000000000000"}, "No patient has this id."),
        ({"patient": "MRN-000001"}, "Enter a valid UUID."),
        ({"starts_on": "2030-01-02", "ends_on": "2030-01-01"}, "A membership cannot end before it starts."),
        ({"clinician": "dr.care", "patient": "alice", "starts_on": "2020-01-01"}, "is on this patient"),
    ],
    ids=["unknown-username", "not-a-clinician", "no-such-patient", "not-an-id", "ends-before-start", "twice"],
)
def test_refusals_are_shown_and_change_nothing(world: Any, change: dict[str, str], error: str) -> None:
    with system_context("test: an existing membership"):
        CareTeamMembership.objects.create(patient=world.alice, clinician=world.doctor, starts_on=dt.date(2020, 1, 1))
    fields = {"patient": str(world.bob.pk), "clinician": world.outsider.username, **change}
    if fields["patient"] == "alice":
        fields["patient"] = str(world.alice.pk)
    before = AuditEvent.objects.filter(action="careteam.add").count()
    response = _client(world.admin).post(ADD, fields, secure=True)
    assert response.status_code == 200
    assert error.replace("'", "&#x27;") in _errors_of(response.content.decode())
    assert len(_memberships()) == 2  # the fixture's and the one above
    assert AuditEvent.objects.filter(action="careteam.add").count() == before


def test_ending_memberships_goes_through_the_service(world: Any) -> None:
    today = timezone.localdate()
    with system_context("test: memberships to end"):
        current = CareTeamMembership.objects.create(patient=world.bob, clinician=world.outsider)
        ended = CareTeamMembership.objects.create(
            patient=world.bob, clinician=world.doctor, starts_on=dt.date(2020, 1, 1), ends_on=dt.date(2020, 6, 1)
        )
        future = CareTeamMembership.objects.create(
            patient=world.alice, clinician=world.outsider, starts_on=today + dt.timedelta(days=7)
        )
    response = _client(world.admin).post(
        LIST,
        {"action": "end_memberships", "_selected_action": [str(m.pk) for m in (current, ended, future)], "index": 0},
        secure=True,
    )
    assert response.status_code == 302
    said = {str(m) for m in get_messages(response.wsgi_request)}
    assert f"Care-team membership {current.pk} ends today ({today})." in said
    assert f"Care-team membership {ended.pk}: This membership ended on 2020-06-01 already." in said
    assert f"Care-team membership {future.pk}: A membership cannot end before it starts." in said
    [current], [ended], [future] = (_memberships(pk=m.pk) for m in (current, ended, future))
    assert (current.ends_on, ended.ends_on, future.ends_on) == (today, dt.date(2020, 6, 1), None)
    event = AuditEvent.objects.get(action="careteam.end")
    assert (event.resource_id, event.actor_id, event.patient_id) == (current.pk, world.admin.pk, world.bob.pk)


def test_viewers_can_neither_add_nor_end(world: Any, user_factory: Any) -> None:
    viewer = user_factory("admin", is_staff=True)
    group = Group.objects.create(name="Care-team viewers")
    group.permissions.add(Permission.objects.get(codename="view_careteammembership"))
    viewer.groups.add(group)
    client = Client()
    sign_in_as(client, viewer)
    assert client.get(ADD, secure=True).status_code == 403
    page = client.get(LIST, secure=True).content.decode()
    assert "end_memberships" not in page and ADD not in page
    [membership] = _memberships()
    client.post(LIST, {"action": "end_memberships", "_selected_action": [str(membership.pk)], "index": 0}, secure=True)
    assert _memberships()[0].ends_on is None


def test_changing_a_care_team_asks_who_is_there_first(world: Any) -> None:

    world.admin.groups.add(ensure_administrators_group())
    client = Client()
    sign_in_as(client, world.admin, reauthenticated=False)
    url = f"/admin/patients/careteammembership/add/?patient={world.alice.pk}"

    answer = client.get(url, secure=True)
    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/reauth/?next=")
    posted = client.post(url, {"patient": str(world.alice.pk), "clinician": world.outsider.username}, secure=True)
    assert posted.status_code == 302 and posted["Location"].startswith("/accounts/reauth/")
    with system_context("count"):
        assert not CareTeamMembership.objects.filter(clinician=world.outsider).exists()

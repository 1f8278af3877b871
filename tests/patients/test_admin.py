"""The admin lists break-glass grants and care teams for administrators — and no PHI."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from neonpro.security.context import system_context
from patients.models import EmergencyAccessGrant
from tests.conftest import sign_in_as

pytestmark = pytest.mark.django_db


def test_admin_reviews_grants_and_care_teams_without_seeing_patients(world) -> None:  # type: ignore[no-untyped-def]
    with system_context("grant"):
        EmergencyAccessGrant.objects.create(
            clinician=world.outsider,
            patient=world.bob,
            reason="Collapsed in the lobby, no records available",
            expires_at=timezone.now() + dt.timedelta(hours=1),
        )
    world.admin.is_superuser = True
    world.admin.save()
    client = Client()
    sign_in_as(client, world.admin)
    grants = client.get("/admin/patients/emergencyaccessgrant/", secure=True)
    assert grants.status_code == 200
    assert str(world.bob.pk) in grants.content.decode()
    teams = client.get("/admin/patients/careteammembership/", secure=True)
    assert teams.status_code == 200 and str(world.alice.pk) in teams.content.decode()
    page = grants.content.decode() + teams.content.decode()
    with system_context("find the grant"):
        grant = EmergencyAccessGrant._plain.get(clinician=world.outsider)
    page += client.get(f"/admin/patients/emergencyaccessgrant/{grant.pk}/change/", secure=True).content.decode()
    for phi in (world.bob.full_name, world.alice.full_name, world.alice.ssn, world.bob.email, "Collapsed in the lobby"):
        assert phi not in page
    assert client.get("/admin/patients/patient/", secure=True).status_code == 404

"""The key inventory in the admin: metadata, usage, audited actions, never key material."""

from __future__ import annotations

import base64

import pytest
from django.test import Client

from keys.models import DataKey
from neonpro.audit.models import AuditEvent
from tests.conftest import sign_in_as

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser(user_factory):  # type: ignore[no-untyped-def]
    return user_factory("admin", username="keyadmin", is_staff=True, is_superuser=True)


def _client(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    sign_in_as(client, user)
    return client


def test_inventory_shows_keys_and_usage_without_material(superuser, patient_factory, system) -> None:  # type: ignore[no-untyped-def]
    patient_factory()
    key = DataKey.objects.get(purpose="field", status="active")
    page = _client(superuser).get("/admin/keys/datakey/", secure=True)
    assert page.status_code == 200
    text = page.content.decode()
    assert "AES-256-GCM" in text and "HMAC-SHA256" in text
    detail = _client(superuser).get(f"/admin/keys/datakey/{key.pk}/change/", secure=True).content.decode()
    assert "patients.Patient.full_name" in detail, "which rows still use it"
    wrapped = bytes(key.wrapped_key)
    for form in (wrapped.hex(), base64.b64encode(wrapped).decode()):
        assert form[:16] not in text and form[:16] not in detail


def test_superusers_rotate_from_the_admin_and_it_is_audited(superuser, patient_factory, system) -> None:  # type: ignore[no-untyped-def]
    patient_factory()
    old = DataKey.objects.get(purpose="field", status="active")
    response = _client(superuser).post(
        "/admin/keys/datakey/", {"action": "rotate_purpose", "_selected_action": [old.pk]}, secure=True, follow=True
    )
    assert response.status_code == 200
    old.refresh_from_db()
    assert old.status == "decrypt_only"
    assert AuditEvent.objects.filter(action="key.rotate", outcome="success").exists()


def test_staff_without_superuser_cannot_act(user_factory, patient_factory, system) -> None:  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import Permission

    patient_factory()
    staff = user_factory("admin", username="staffonly", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_datakey"))
    old = DataKey.objects.get(purpose="field", status="active")
    _client(staff).post("/admin/keys/datakey/", {"action": "rotate_purpose", "_selected_action": [old.pk]}, secure=True)
    old.refresh_from_db()
    assert old.status == "active"

"""``GET /api/v1/me/`` names the caller (id, role, display name) and links where their role
starts; it reads no patient data, and anonymous callers are refused."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import audit_events
from tests.errors import error_code

pytestmark = pytest.mark.django_db
BASE = "https://testserver/api/v1"


@pytest.mark.parametrize("who", ["doctor", "alice_user", "admin"])
def test_me_is_the_callers_id_role_and_display_name(api: Any, world: Any, who: str) -> None:
    user = getattr(world, who)

    answer = api(user).get("/api/v1/me/")

    assert answer.status_code == 200
    body = answer.json()
    assert (body["id"], body["role"], body["display_name"]) == (str(user.pk), user.role, user.username)
    assert body["links"]["me"] == f"{BASE}/me/"
    assert body["links"]["schema"] == "https://testserver/api/schema/"
    assert audit_events(action="patient.read", actor_id=user.pk) == []  # no PHI read to answer


def test_the_display_name_is_the_accounts_full_name(api: Any, world: Any) -> None:
    world.doctor.first_name, world.doctor.last_name = "Gregory", "House"
    world.doctor.save(update_fields=["first_name", "last_name"])

    assert api(world.doctor).get("/api/v1/me/").json()["display_name"] == "Gregory House"


def test_a_patient_is_linked_to_their_own_record_and_clinicians(api: Any, world: Any) -> None:
    body = api(world.alice_user).get("/api/v1/me/").json()

    mine = f"{BASE}/patients/{world.alice.pk}"
    assert body["patient"] == str(world.alice.pk)
    assert body["links"] == {
        "me": f"{BASE}/me/",
        "schema": "https://testserver/api/schema/",
        "patient": f"{mine}/",
        "records": f"{mine}/records/",
        "appointments": f"{BASE}/appointments/",
        "clinicians": f"{mine}/clinicians/",
        "export": f"{mine}/export/",
    }


def test_a_patient_account_without_a_patient_record_gets_no_record_links(api: Any, user_factory: Any) -> None:
    lonely = user_factory("patient")

    body = api(lonely).get("/api/v1/me/").json()

    assert body["patient"] is None
    assert set(body["links"]) == {"me", "schema", "appointments"}


def test_a_clinician_is_linked_to_patients_search_and_emergency_access(api: Any, world: Any) -> None:
    body = api(world.doctor).get("/api/v1/me/").json()

    assert body["patient"] is None
    assert body["links"]["patients"] == f"{BASE}/patients/"
    assert body["links"]["search"] == f"{BASE}/patients/search/"
    assert body["links"]["emergency_access"] == f"{BASE}/emergency-access/"


def test_an_administrator_gets_no_links_to_patient_data(api: Any, world: Any) -> None:
    assert set(api(world.admin).get("/api/v1/me/").json()["links"]) == {"me", "schema"}


def test_an_agent_is_linked_to_the_lists(api: Any, user_factory: Any) -> None:
    agent = user_factory("agent")

    links = api(agent).get("/api/v1/me/").json()["links"]

    assert set(links) == {"me", "schema", "patients", "appointments"}


def test_me_needs_a_session(api: Any) -> None:
    answer = api(None).get("/api/v1/me/")

    # 401 with WWW-Authenticate: the API's first authentication is the agents' (docs/agents.md).
    assert answer.status_code == 401 and answer["WWW-Authenticate"] == 'Bearer realm="neonpro"'
    assert error_code(answer) == "not_authenticated"

"""PHI stays out of caches and URLs: every /api/ response is ``Cache-Control: no-store`` (errors
too), the export is an attachment whose file name carries no PHI, and no route takes a
searchable value in its URL."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
import time_machine

pytestmark = pytest.mark.django_db


def test_every_api_answer_is_no_store(api: Any, world: Any) -> None:
    doctor, alice = api(world.doctor), api(world.alice_user)
    answers = [
        api(None).get("/api/v1/"),
        api(None).get("/api/v1/patients/"),  # 401/403
        api(None).get("/api/schema/"),
        doctor.get("/api/v1/patients/"),
        doctor.get(f"/api/v1/patients/{world.alice.pk}/"),
        doctor.get(f"/api/v1/patients/{uuid.uuid4()}/"),  # 404 of the view
        doctor.get("/api/v1/patients/not-a-uuid/"),  # 404 of the URL resolver
        doctor.post("/api/v1/patients/search/", {"field": "ssn", "value": world.alice.ssn}),
        doctor.post("/api/v1/patients/search/", {"field": "nope"}),  # 400
        doctor.get(f"/api/v1/patients/{world.alice.pk}/records/"),
        doctor.get("/api/v1/appointments/"),
        alice.get(f"/api/v1/patients/{world.alice.pk}/export/"),
    ]
    for answer in answers:
        assert answer["Cache-Control"] == "no-store", (answer.request["PATH_INFO"], answer.status_code)
    assert {a.status_code for a in answers} >= {200, 400, 404}


def test_the_export_is_an_attachment_named_without_phi(api: Any, world: Any) -> None:
    with time_machine.travel("2031-02-03 10:00:00Z", tick=False):
        answer = api(world.alice_user).get(f"/api/v1/patients/{world.alice.pk}/export/")

    assert answer.status_code == 200
    assert answer["Content-Disposition"] == 'attachment; filename="neonpro-export-2031-02-03.json"'
    assert answer.json()["patient"]["full_name"] == "Alice Canary"


def test_refused_exports_are_not_attachments(api: Any, world: Any) -> None:
    refused = api(world.doctor).get(f"/api/v1/patients/{world.alice.pk}/export/")
    missing = api(world.bob_user).get(f"/api/v1/patients/{world.alice.pk}/export/")

    assert (refused.status_code, missing.status_code) == (403, 404)
    assert "Content-Disposition" not in refused and "Content-Disposition" not in missing


def test_no_route_takes_a_searchable_value_or_a_token_in_its_url() -> None:
    from django.urls import get_resolver

    routes = []

    def walk(patterns: Any, prefix: str = "") -> None:
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                routes.append(prefix + str(pattern.pattern))

    walk(get_resolver().url_patterns)
    api_routes = [route for route in routes if route.startswith("api/")]
    assert "api/v1/emergency-access/" in api_routes
    for route in api_routes:
        for converter in re.findall(r"<(\w+):\w+>", route):
            assert converter == "uuid", route  # ids only: never a name, an SSN, an MRN or a token

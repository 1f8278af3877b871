"""Every API error has one body, ``{"error": {"code", "message", "fields"}}``, whatever raised it."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from neonpro.security.error_body import error_body, flatten_fields, validation_body
from tests.conftest import sign_in_as
from tests.errors import error_code, error_fields, error_message, error_of

pytestmark = pytest.mark.django_db


def test_nested_field_errors_are_dotted_and_list_items_indexed() -> None:
    detail = {"address": {"city": ["Required."]}, "tags": [{}, {"name": ["Too long."]}], "age": "Not a number."}

    assert flatten_fields(detail) == {
        "address.city": ["Required."],
        "tags.1.name": ["Too long."],
        "age": ["Not a number."],
    }


def test_form_wide_messages_become_the_message_and_field_ones_stay_fields() -> None:
    assert validation_body({"non_field_errors": ["Pick one."], "when": ["Bad date."]}) == error_body(
        "invalid", "Pick one.", {"when": ["Bad date."]}
    )
    assert validation_body(["Plain list."]) == error_body("invalid", "Plain list.", {})
    assert validation_body({"when": ["Bad date."]})["error"]["message"] == "The request is invalid; see fields."


def test_djangos_own_permission_denied_gets_the_same_body() -> None:
    from django.core.exceptions import PermissionDenied

    from neonpro.security.api import exception_handler

    response = exception_handler(PermissionDenied("no"), {})

    assert response is not None and response.status_code == 403
    assert response.data == error_body("permission_denied", "You do not have permission to perform this action.")


def test_djangos_http404_gets_the_not_found_body() -> None:
    from django.http import Http404

    from neonpro.security.api import exception_handler

    response = exception_handler(Http404("no such thing"), {})

    assert response is not None and response.status_code == 404
    assert response.data == error_body("not_found", "Not found.")


def test_an_unauthenticated_call_is_not_authenticated() -> None:
    answer = Client().get("/api/v1/patients/", secure=True)

    assert answer.status_code in (401, 403) and error_code(answer) == "not_authenticated"


def test_a_validation_failure_names_each_field_and_repeats_no_value(api: Any, world: Any) -> None:
    answer = api(world.doctor).post("/api/v1/patients/", {"full_name": "", "date_of_birth": "not-a-date"})

    assert answer.status_code == 400 and error_code(answer) == "invalid"
    assert {"full_name", "date_of_birth"} <= set(error_fields(answer))
    assert "not-a-date" not in answer.content.decode()


def test_malformed_json_wrong_media_type_and_wrong_method(world: Any) -> None:
    client = sign_in_as(Client(), world.doctor)

    malformed = client.post("/api/v1/patients/", "{not json", content_type="application/json", secure=True)
    form = client.post("/api/v1/patients/", {"full_name": "x"}, secure=True)
    method = client.delete("/api/v1/patients/", secure=True)

    assert malformed.status_code == 400 and error_code(malformed) == "parse_error"
    assert form.status_code == 415 and error_code(form) == "unsupported_media_type"
    assert method.status_code == 405 and error_code(method) == "method_not_allowed"
    assert all(error_fields(answer) == {} for answer in (malformed, form, method))


def test_an_unknown_or_unreachable_patient_is_the_same_not_found(api: Any, world: Any) -> None:
    doctor = api(world.doctor)
    missing = doctor.get("/api/v1/patients/00000000-0000-4000-8000-000000000000/")
    others = doctor.get(f"/api/v1/patients/{world.bob.pk}/")

    assert error_of(missing) == error_of(others) == {"code": "not_found", "message": "Not found.", "fields": {}}
    assert error_message(missing) == "Not found."

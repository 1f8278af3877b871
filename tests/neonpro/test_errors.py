"""API clients get JSON errors, people get pages — also for URLs no route matches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client, RequestFactory

from neonpro.security import errors
from tests.conftest import sign_in_as

pytestmark = pytest.mark.django_db


def _json_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body: dict[str, Any] = json.loads(response.content)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/patients/not-a-uuid/",
        "/api/v1/records/123/",
        "/api/v1/no-such-endpoint/",
        "/api/v2/patients/",
        "/api/",
    ],
)
def test_unmatched_api_urls_answer_json_404(world: Any, path: str) -> None:
    client = Client()
    sign_in_as(client, world.doctor)

    body = _json_error(client.get(path, secure=True), 404)

    assert body == {"code": "not_found", "message": "Not found.", "fields": {}}


def test_unmatched_page_urls_answer_an_html_404(world: Any) -> None:
    client = Client()
    sign_in_as(client, world.doctor)

    response = client.get("/no-such-page/", secure=True)

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_api_post_without_csrf_token_is_a_json_403(world: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    sign_in_as(client, world.doctor)

    response = client.post(
        "/api/v1/patients/search/", {"field": "mrn", "value": "X"}, content_type="application/json", secure=True
    )

    assert "CSRF" in _json_error(response, 403)["message"]


def test_csrf_failure_view_speaks_json_under_api_and_html_elsewhere() -> None:
    factory = RequestFactory()

    api = errors.csrf_failure(factory.post("/api/v1/patients/search/"), reason="Origin checking failed")
    page = errors.csrf_failure(factory.post("/accounts/login/"), reason="Origin checking failed")

    assert "CSRF" in _json_error(api, 403)["message"]
    assert page.status_code == 403 and page["Content-Type"].startswith("text/html")


def test_server_error_under_api_is_json_without_details() -> None:
    response = errors.server_error(RequestFactory().get("/api/v1/patients/"))

    body = _json_error(response, 500)
    assert "Traceback" not in body["message"]


def test_other_handlers_under_api_are_json() -> None:
    factory = RequestFactory()

    _json_error(errors.bad_request(factory.get("/api/v1/x/")), 400)
    _json_error(errors.permission_denied(factory.get("/api/v1/x/")), 403)
    assert errors.bad_request(factory.get("/x/")).status_code == 400
    assert errors.permission_denied(factory.get("/x/")).status_code == 403


def test_favicon_is_served_not_a_404(client: Client) -> None:
    response = client.get("/favicon.ico", secure=True)

    assert response.status_code == 301
    assert response["Location"].endswith("neonpro/favicon.svg")
    found = finders.find("neonpro/favicon.svg")
    assert found and b"<svg" in Path(str(found)).read_bytes()


@pytest.mark.parametrize("depth", [33, 200, 5000])
def test_deeply_nested_json_is_a_400_not_a_500(world: Any, depth: int) -> None:
    client = Client()
    sign_in_as(client, world.doctor)
    body = '{"field": "mrn", "value": ' + "[" * depth + "]" * depth + "}"

    response = client.post("/api/v1/patients/search/", body, content_type="application/json", secure=True)

    assert "nested too deeply" in _json_error(response, 400)["message"]


def test_ordinary_nesting_still_parses(world: Any) -> None:
    client = Client()
    sign_in_as(client, world.doctor)
    body = json.dumps({"field": "mrn", "value": [[["x"]]]})

    response = client.post("/api/v1/patients/search/", body, content_type="application/json", secure=True)

    assert response.status_code == 400
    assert "value" in _json_error(response, 400)["fields"]  # a validation error about the field, not the nesting


def test_server_error_outside_api_is_the_plain_page() -> None:
    response = errors.server_error(RequestFactory().get("/admin/"))

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")

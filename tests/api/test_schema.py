"""The OpenAPI schema: valid (drf-spectacular's own validation, warnings fatal), public, and
exact where fuzzing depends on it — every operation's security, errors, path parameters and
headers; strict request bodies; the API root linking it all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db
ERROR_REF = {"$ref": "#/components/schemas/Error"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The schema as /api/schema/ serves it (generated without a request, as `spectacular` does)."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    document: dict[str, Any] = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(public=True)))
    return document


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in schema["paths"].items() for method, op in item.items()]


def test_spectacular_validates_the_schema_with_warnings_fatal(tmp_path: Path) -> None:
    out = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))

    document = yaml.safe_load(out.read_text())
    assert document["openapi"].startswith("3.")
    assert len(operations(document)) >= 20


def test_the_schema_is_public_in_yaml_and_json(schema: dict[str, Any]) -> None:
    answer = Client().get("/api/schema/", secure=True)
    as_json = Client().get("/api/schema/?format=json", secure=True)

    assert answer.status_code == 200 and as_json.status_code == 200
    assert answer["Content-Type"].startswith("application/vnd.oai.openapi")
    assert answer["Cache-Control"] == "no-store"
    assert yaml.safe_load(answer.content)["paths"].keys() == schema["paths"].keys()
    assert json.loads(as_json.content)["components"]["schemas"].keys() == schema["components"]["schemas"].keys()


def test_every_operation_is_described_by_id_with_its_security(schema: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(schema)]
    assert len(ids) == len(set(ids))
    for method, path, op in operations(schema):
        if path == "/api/v1/":
            assert "security" not in op  # the API root is public
            continue
        session = {"sessionCookie": []} if method == "GET" else {"sessionCookie": [], "csrfToken": []}
        assert op["security"] == [session, {"bearerToken": []}], (method, path)
    schemes = schema["components"]["securitySchemes"]
    assert schemes["sessionCookie"] == {**schemes["sessionCookie"], "in": "cookie", "name": "__Host-sessionid"}
    assert schemes["csrfToken"]["in"] == "header" and schemes["csrfToken"]["name"] == "X-CSRFTOKEN"
    assert schemes["bearerToken"]["scheme"] == "bearer"


def test_every_error_response_is_the_error_body_with_no_store(schema: dict[str, Any]) -> None:
    for method, path, op in operations(schema):
        codes = set(op["responses"])
        assert {"406", "500", "503"} <= codes, (method, path)
        if path != "/api/v1/":
            assert {"401", "403", "429"} <= codes, (method, path)
        if "{id}" in path:
            assert "404" in codes, (method, path)
        if "requestBody" in op:
            assert {"400", "413", "415"} <= codes, (method, path)
            assert list(op["requestBody"]["content"]) == ["application/json"]
        for code, response in op["responses"].items():
            assert response["headers"]["Cache-Control"]["required"] is True
            assert response["headers"]["Cache-Control"]["schema"]["enum"] == ["no-store"]
            if code >= "400":
                assert response["content"]["application/json"]["schema"] == ERROR_REF, (method, path, code)
            if code in ("429", "503"):
                assert "Retry-After" in response["headers"]
            if code == "401":
                assert response["headers"]["WWW-Authenticate"]["required"] is False
    error = schema["components"]["schemas"]["ErrorDetail"]
    assert set(error["required"]) == {"code", "message", "fields"}


def test_path_ids_are_uuids(schema: dict[str, Any]) -> None:
    for _, path, op in operations(schema):
        for parameter in op.get("parameters", []):
            if parameter["in"] == "path":
                assert parameter["schema"] == {"type": "string", "format": "uuid"}, path


def test_lists_document_their_page_parameters_and_link_header(schema: dict[str, Any]) -> None:
    lists = {
        "/api/v1/patients/": set(),
        "/api/v1/patients/{id}/records/": {"from", "to"},
        "/api/v1/patients/{id}/clinicians/": set(),
        "/api/v1/appointments/": {"from", "to", "patient", "provider"},
    }
    for path, filters in lists.items():
        op = schema["paths"][path]["get"]
        query = {p["name"]: p["schema"] for p in op["parameters"] if p["in"] == "query"}
        assert set(query) == {"page_size", "cursor", *filters}, path
        assert query["page_size"] == {"type": "integer", "minimum": 1, "maximum": 999_999}
        for day in {"from", "to"} & filters:
            assert query[day] == {"type": "string", "format": "date"}
        assert op["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
        assert not op["responses"]["200"]["headers"]["Link"].get("required", False)  # none on the last page


def test_request_bodies_refuse_unknown_fields(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    requests = [name for name in components if name.endswith("Request")]
    assert len(requests) >= 10
    for name in requests:
        assert components[name]["additionalProperties"] is False, name


def test_people_are_named_and_nullable_fields_are_nullable(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    for name in ("Record", "Appointment"):
        assert components[name]["properties"]["patient_name"]["nullable"] is True
        assert components[name]["properties"]["provider_name"]["nullable"] is True
    for field in ("ssn", "email", "phone", "address"):
        assert components["Patient"]["properties"][field]["nullable"] is True
    assert components["Clinician"]["required"] == ["display_name", "id"]
    export = schema["paths"]["/api/v1/patients/{id}/export/"]["get"]["responses"]["200"]
    assert export["headers"]["Content-Disposition"]["required"] is True


def test_the_api_root_links_the_resources_the_schema_and_the_docs() -> None:
    answer = Client().get("/api/v1/", secure=True)

    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
    body = answer.json()
    assert body["schema"] == "https://testserver/api/schema/"
    assert body["docs"] == "https://testserver/api/docs/"
    assert body["sign_in"] == "https://testserver/accounts/login/"
    resources = body["resources"]
    assert resources["patients"] == "https://testserver/api/v1/patients/"
    assert resources["patient_records"] == "https://testserver/api/v1/patients/{id}/records/"
    assert resources["appointment_cancel"] == "https://testserver/api/v1/appointments/{id}/cancel/"
    assert resources["emergency_access"] == "https://testserver/api/v1/emergency-access/"
    for url in resources.values():
        template = url.removeprefix("https://testserver").replace("{id}", "00000000-0000-4000-8000-000000000000")
        assert Client().get(template, secure=True).status_code in (401, 403, 405), url  # a route, needing sign-in


def test_the_docs_page_loads_swagger_from_our_own_static_files() -> None:
    page = Client().get("/api/docs/", secure=True)

    assert page.status_code == 200
    html = page.content.decode()
    assert "<style" not in html and "<script>" not in html  # nothing inline for the CSP to refuse
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "/static/neonpro/api-docs.css" in html
    assert 'src="/api/docs/?script="' in html
    script = Client().get("/api/docs/?script=", secure=True)
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert script["Cross-Origin-Resource-Policy"] == "same-origin"
    assert '"/api/schema/"' in script.content.decode()

"""The live API fuzzed against its own OpenAPI schema (schemathesis), for each kind of caller.

Against the real served app (``manage.py serve``: TLS, PostgreSQL as the application role,
row-level security on; tests/api/conftest.py ``fuzz_app``), every operation of the schema gets
generated requests — valid and invalid ones, its documented examples and its boundaries —
and every response must:

* not be a server error (no 5xx);
* have a documented status code, content type, body (against its schema) and headers;
* carry no PHI of the canary patients (tests/api/live.py), who are outside every demo
  clinician's scope — whatever ids, bodies and parameters the fuzzer sends.

Path ids are drawn now and then from what the caller may see (so operations reach real rows,
not only 404s) and from the canaries' ids (so out-of-scope rows are probed directly). Break-
glass is fuzzed too, but never with a canary's id: a granted break-glass puts the canary in the
caller's scope on purpose. Nothing is excluded: there is no API logout to cut the session.

``caller`` is what is parametrised: a clinician with a session (cookie and CSRF header) and an
agent with a bearer token (``Authorization``, no cookie), each run on every operation.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.live import Caller, signed_in
from tests.conftest import fuzz_budget

pytestmark = pytest.mark.django_db  # the served app runs on a clone of the test database
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES = fuzz_budget(20)
BREAK_GLASS = "/api/v1/patients/{id}/emergency-access/"
KIND_OF_ID = {"records": "records", "appointments": "appointments"}


# The caller whose credentials the auth provider below puts on every generated case.
_ACTIVE: dict[str, Caller] = {}


AGENT_SCOPES = "patients:read,patients:write,records:read,records:write,appointments:read,appointments:write"


@pytest.fixture(scope="module", params=["clinician", "agent"])
def caller(request: pytest.FixtureRequest, fuzz_app: Any) -> Iterator[Caller]:
    """A clinician signed in with a session (dr.house: two patients on the care team), or an
    agent with every scope on dr.house's care team, calling with a bearer token an operator
    issued with ``manage.py agents``."""
    name = f"fuzz-agent-{uuid.uuid4().hex[:6]}"
    if request.param == "clinician":
        _ACTIVE["caller"] = Caller.with_session(request.param, fuzz_app, signed_in(fuzz_app, "dr.house"))
    else:
        created = fuzz_app.manage("agents", "create", name, "--scopes", AGENT_SCOPES, "--care-team-of", "dr.house")
        assert created.returncode == 0, created.stderr
        issued = fuzz_app.manage("agents", "token", name, "--expires-days", "1")
        assert issued.returncode == 0, issued.stderr
        (token,) = re.findall(r"npa_[a-z]{12}_[0-9a-f]{64}", issued.stdout)
        _ACTIVE["caller"] = Caller.with_token(request.param, fuzz_app, token)
    yield _ACTIVE["caller"]
    _ACTIVE.clear()
    if request.param == "agent":
        fuzz_app.manage("agents", "disable", name)
    else:  # the fuzzer sent wrong passwords to /reauth/: they count toward dr.house's lock-out
        unlocked = fuzz_app.manage("signin", "unlock", "--username", "dr.house")
        assert unlocked.returncode == 0, unlocked.stderr


def _schema() -> schemathesis.BaseSchema:
    """The schema the served app serves, generated here (Django is set up before collection),
    so that each operation is a test of its own; test_the_live_schema_is_this_one checks that
    the live app serves exactly it."""
    config = schemathesis.Config.from_dict(
        {
            "seed": 20260901,
            "generation": {"max-examples": EXAMPLES, "database": "none"},
            "phases": {"stateful": {"enabled": False}},
        }
    )
    return schemathesis.openapi.from_dict(generated_schema(), config=config)


def generated_schema() -> dict[str, Any]:
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    document: dict[str, Any] = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(public=True)))
    return document


schema = _schema()


@schema.auth(refresh_interval=None)
class CallerCredentials:
    """The caller's real credentials instead of generated ones (schemathesis still leaves
    them out where it tests a request without them)."""

    def get(self, case: Any, context: Any) -> Caller:
        return _ACTIVE["caller"]

    def set(self, case: Any, data: Caller, context: Any) -> None:
        case.headers = {**(case.headers or {}), **data.headers}
        case.cookies = {**(case.cookies or {}), **data.cookies}


def test_the_live_schema_is_this_one(fuzz_app: Any) -> None:
    import requests

    served = requests.get(f"{fuzz_app.url}/api/schema/?format=json", verify=str(fuzz_app.cert), timeout=30)

    assert served.status_code == 200 and served.json() == generated_schema()


def _ids_for(path: str, caller: Caller, canaries: Any) -> tuple[list[str], list[str]]:
    """(ids in the caller's scope, canary ids) of the kind the path's ``{id}`` names."""
    kind = "patients"
    for segment, name in KIND_OF_ID.items():
        if path.startswith(f"/api/v1/{segment}/"):
            kind = name
    if path.startswith("/api/v1/emergency-access/"):
        return [], []
    mine = caller.scope[kind]
    theirs = {"patients": canaries.patient_ids, "records": canaries.record_ids}.get(kind, canaries.appointment_ids)
    return mine, ([] if path == BREAK_GLASS else theirs)


@schema.parametrize()
@schema.given(data=st.data())
@settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck), deadline=None)
def test_the_live_api_keeps_to_its_schema_and_to_the_callers_scope(
    case: Any, data: Any, caller: Caller, fuzz_app: Any
) -> None:
    canaries = fuzz_app.canaries
    if case.path_parameters and "id" in case.path_parameters:
        mine, theirs = _ids_for(case.operation.path, caller, canaries)
        choice = data.draw(st.sampled_from(["generated", *(["mine"] if mine else []), *(["theirs"] if theirs else [])]))
        if choice != "generated":
            case.path_parameters["id"] = data.draw(st.sampled_from(mine if choice == "mine" else theirs))

    # No shared session: the credentials are the case's (CallerCredentials), and the cookie jar of
    # the caller's own session must not take in what the server answers a case without them.
    response = case.call(base_url=fuzz_app.url, verify=str(fuzz_app.cert), timeout=30)

    case.validate_response(response, checks=CHECKS)
    credentials = caller.headers.get("Authorization") or caller.cookies.get("__Host-sessionid")
    sent = (case.headers or {}).get("Authorization") or (case.cookies or {}).get("__Host-sessionid")
    if sent == credentials:  # with the caller's credentials the run must reach the views, not stop at a 401
        assert response.status_code != 401, f"{case.method} {case.formatted_path}: the caller's credentials refused"
    leaked = canaries.found_in(response.text)
    assert not leaked, f"{case.method} {case.formatted_path} served canary PHI: {leaked}"


def test_the_canaries_are_served_to_their_clinician_and_to_nobody_else(fuzz_app: Any, caller: Caller) -> None:
    """The control of the fuzz run: the canary values are real, servable PHI (their own
    clinician gets them, and the detector finds them there), and probing every route with
    their ids and values directly gives the caller nothing."""
    canaries = fuzz_app.canaries
    keeper = signed_in(fuzz_app, canaries.keeper, canaries.keeper_password, canaries.keeper_totp)
    [patient, other] = canaries.patient_ids
    seen = keeper.get(f"{fuzz_app.url}/api/v1/patients/{patient}/records/", timeout=30)
    assert seen.status_code == 200 and canaries.found_in(seen.text)

    probes = [
        *(f"/api/v1/patients/{pid}/{suffix}" for pid in (patient, other) for suffix in PATIENT_ROUTES),
        *(f"/api/v1/records/{rid}/" for rid in canaries.record_ids),
        *(f"/api/v1/appointments/{aid}/" for aid in canaries.appointment_ids),
        f"/api/v1/appointments/?patient={patient}",
    ]
    for path in probes:
        answer = caller.get(fuzz_app, path)
        assert answer.status_code == (403 if path.endswith("export/") else 404), path  # exports: patients only
        assert not canaries.found_in(answer.text), path
    for field, value in zip(("full_name", "mrn", "ssn", "email", "phone"), canaries.values, strict=False):
        if field == "full_name":
            continue  # not a searchable field
        found = caller.post(fuzz_app, "/api/v1/patients/search/", {"field": field, "value": value})
        assert found.status_code == 200 and found.json() == [], field
    listed = caller.get(fuzz_app, "/api/v1/patients/?page_size=200")
    assert listed.status_code == 200 and not canaries.found_in(listed.text)


PATIENT_ROUTES = ("", "records/", "clinicians/", "export/")

"""An agent end to end, against the served app (TLS, PostgreSQL as the application role):

an operator creates it and issues its token with ``manage.py agents`` (as typed at a shell),
the agent calls the API over HTTPS with ``Authorization: Bearer``, sees only its patient set,
and once the operator revokes the token it gets a 401 naming the Bearer scheme. Client
certificate headers from an address that is not a configured proxy change nothing.
"""

from __future__ import annotations

import re
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.accounts.agentkit import make_ca, pem, proxy_headers

pytestmark = pytest.mark.django_db  # the served app runs on a clone of the test database
REALM = 'Bearer realm="neonpro"'
OPERATOR = ("--operator", "ops.test", "--reason", "setup")


def _manage(app: Any, *args: str) -> str:
    done = app.manage("agents", *args, *OPERATOR)
    assert done.returncode == 0, done.stdout + done.stderr
    return str(done.stdout)


def _https(app: Any) -> httpx.Client:
    return httpx.Client(base_url=app.url, verify=ssl.create_default_context(cafile=app.cert), timeout=30)


def _rows(response: httpx.Response) -> list[Any]:
    body = response.json()
    return body if isinstance(body, list) else body["results"]


@pytest.fixture
def agent_name(served_app: Any) -> Iterator[str]:
    name = f"served-bot-{uuid.uuid4().hex[:6]}"
    created = _manage(
        served_app, "create", name, "--scopes", "patients:read,records:read", "--patients", "MRN-000101",
        "--description", "end-to-end test agent",
    )  # fmt: skip
    assert f"Agent {name}" in created and "for 1 patient(s)" in created
    yield name
    _manage(served_app, "disable", name)  # what the test leaves in the served database stops working


def test_a_token_from_the_command_reads_only_the_agents_patients_until_it_is_revoked(
    served_app: Any, agent_name: str
) -> None:
    issued = _manage(served_app, "token", agent_name, "--expires-days", "30")
    (token,) = re.findall(r"npa_[a-z]{12}_[0-9a-f]{64}", issued)
    prefix = token.split("_")[1]
    auth = {"Authorization": f"Bearer {token}"}

    with _https(served_app) as http:
        listed = http.get("/api/v1/patients/", headers=auth)
        assert listed.status_code == 200, listed.text
        (patient,) = _rows(listed)
        assert patient["mrn"] == "MRN-000101"
        records = http.get(f"/api/v1/patients/{patient['id']}/records/", headers=auth)
        assert records.status_code == 200 and _rows(records), "the demo history of its patient"
        assert http.get(f"/api/v1/patients/{uuid.uuid4()}/", headers=auth).status_code == 404
        refused = http.post(f"/api/v1/patients/{patient['id']}/records/", headers=auth, json={"diagnosis": "x"})
        assert refused.status_code == 403, "records:write is not among its scopes"
        me = http.get("/api/v1/me/", headers=auth)
        assert me.json()["role"] == "agent"

        listing = _manage(served_app, "list")
        assert agent_name in listing and token not in listing
        assert f"API token {prefix} revoked." in _manage(served_app, "revoke-token", prefix)

        revoked = http.get("/api/v1/patients/", headers=auth)
        assert revoked.status_code == 401 and revoked.headers["WWW-Authenticate"] == REALM
        anonymous = http.get("/api/v1/patients/")
        assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == REALM


def test_certificate_headers_from_an_untrusted_address_authenticate_nobody(
    served_app: Any, agent_name: str, tmp_path: Path
) -> None:
    certificate = make_ca().issue(f"{agent_name}.agents")
    path = tmp_path / "agent.pem"
    path.write_bytes(pem(certificate))
    assert "now identifies" in _manage(served_app, "certificate", agent_name, "--pem", str(path))
    # What nginx would send, but the served app was given no trusted proxy (the default).
    headers = {name[5:].replace("_", "-"): value for name, value in proxy_headers(certificate).items()}

    with _https(served_app) as http:
        answer = http.get("/api/v1/patients/", headers=headers)

    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == REALM

"""The API's exception handler (neonpro/security/api.py) for failures inside a view: the audit
log or the key provider being unavailable is a JSON 503 that says which service failed and
nothing else, never a 500 and never the data the view had started to read."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import OperationalError

from keys.exceptions import ProviderError
from keys.keyring import keyring
from keys.providers.local import LocalKeyProvider
from neonpro.audit.models import AuditEvent
from neonpro.audit.services import AuditUnavailableError
from neonpro.security.api import exception_handler

pytestmark = pytest.mark.django_db
AUDIT_DOWN = {
    "error": {
        "code": "audit_unavailable",
        "message": "The audit log is unavailable, so this request was refused; try again shortly.",
        "fields": {},
    }
}
PROVIDER_DOWN = {
    "error": {
        "code": "service_unavailable",
        "message": "Encryption service unavailable; try again shortly.",
        "fields": {},
    }
}


def _url(patient: Any) -> str:
    return f"/api/v1/patients/{patient.pk}/"


def _keys_down(monkeypatch: pytest.MonkeyPatch, purpose: str) -> None:
    """The key provider stops unwrapping the data keys of one purpose (the others still work)."""
    real_unwrap = LocalKeyProvider.unwrap_key

    def unwrap(self: LocalKeyProvider, blob: bytes, *, key_id: str, context: bytes) -> bytes:
        if context.endswith(f"|{purpose}".encode()):
            raise ProviderError("HSM slot 3 at 10.20.30.40 did not answer", permanent=False)
        return real_unwrap(self, blob, key_id=key_id, context=context)

    keyring.clear()
    monkeypatch.setattr(LocalKeyProvider, "unwrap_key", unwrap)


def test_a_read_that_cannot_be_audited_is_refused_with_a_json_503(api, world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client = api(world.doctor)  # signed in while the audit log is writable
    client.client.raise_request_exception = False
    _keys_down(monkeypatch, "audit")  # no audit key, no audit event: the view's read is refused

    response = client.get(_url(world.alice))

    assert response.status_code == 503 and response["Retry-After"] == "30"
    assert response["Content-Type"] == "application/json" and response.json() == AUDIT_DOWN
    assert world.alice.full_name not in response.content.decode()


def test_a_key_provider_down_inside_a_view_is_a_json_503_naming_no_detail(  # type: ignore[no-untyped-def]
    api, world, monkeypatch, caplog
) -> None:
    client = api(world.doctor)
    client.client.raise_request_exception = False
    _keys_down(monkeypatch, "field")  # only the data keys of encrypted fields: audit and identity work
    caplog.set_level(logging.ERROR, logger="neonpro.security.api")

    response = client.get(_url(world.alice))

    assert response.status_code == 503 and response.json() == PROVIDER_DOWN and response["Retry-After"] == "2"
    assert world.alice.full_name not in response.content.decode()
    logged = [r.getMessage() for r in caplog.records if r.name == "neonpro.security.api"]
    assert logged == ["key provider unavailable: ProviderError"]  # the kind of failure, not where the HSM is
    assert AuditEvent.objects.filter(action="request.error", details__status=503).exists()


@pytest.mark.parametrize(
    ("exc", "status", "detail", "retry_after"),
    [
        (AuditUnavailableError("the chain lock is held by another session"), 503, "audit log is unavailable", "30"),
        (ProviderError("HSM slot 3 did not answer", permanent=False), 503, "Encryption service unavailable", "2"),
        (OperationalError("could not connect"), 503, "the database is unreachable", "2"),
    ],
)
def test_the_handler_maps_each_service_failure_itself(
    exc: Exception, status: int, detail: str, retry_after: str | None
) -> None:
    response = exception_handler(exc, {})

    assert response is not None and response.status_code == status
    message = response.data["error"]["message"]
    assert detail in message and response.get("Retry-After") == retry_after
    assert "HSM" not in message and "chain lock" not in message


def test_a_bug_is_left_to_the_plain_500() -> None:
    assert exception_handler(ValueError("a bug"), {}) is None

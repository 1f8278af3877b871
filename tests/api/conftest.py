from __future__ import annotations

from typing import Any

import pytest
from django.test import Client


@pytest.fixture
def api(client: Client) -> Any:
    """JSON over HTTPS as a given user: ``api(user).get(url)`` / ``.post(url, data)``."""

    class As:
        def __init__(self, user: Any) -> None:
            self.client = Client()
            if user is not None:
                self.client.force_login(user)

        def get(self, url: str) -> Any:
            return self.client.get(url, secure=True)

        def post(self, url: str, data: Any) -> Any:
            return self.client.post(url, data, content_type="application/json", secure=True)

        def patch(self, url: str, data: Any) -> Any:
            return self.client.patch(url, data, content_type="application/json", secure=True)

    return As


def audit_events(**filters: Any) -> list[Any]:
    from neonpro.audit.models import AuditEvent

    return list(AuditEvent.objects.filter(**filters).order_by("id"))

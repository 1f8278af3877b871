"""`/healthz` reaches the real database and Redis; pages redirect plain HTTP to HTTPS."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client


@pytest.mark.django_db
def test_healthz_reports_database_and_cache_ok(client: Client) -> None:
    # The suite runs with REDIS_URL, so "cache": "ok" means Redis answered.
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"

    response = client.get("/healthz", secure=True)

    assert response.status_code == 200
    assert response.json() == {"database": "ok", "cache": "ok", "audit": "ok"}
    assert response["Cache-Control"] == "no-store"


def test_plain_http_page_is_redirected_to_https(client: Client) -> None:
    response = client.get("/accounts/login/")

    assert response.status_code == 301
    assert response["Location"] == "https://testserver/accounts/login/"

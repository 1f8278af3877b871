"""``GET /api/v1/me/`` names the caller's id and role, and nothing else; anonymous is refused."""

from __future__ import annotations

from typing import Any

import pytest

from tests.errors import error_code

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("who", ["doctor", "alice_user", "admin"])
def test_me_is_the_callers_id_and_role(api: Any, world: Any, who: str) -> None:
    user = getattr(world, who)

    answer = api(user).get("/api/v1/me/")

    assert answer.status_code == 200
    assert answer.json() == {"id": str(user.pk), "role": user.role}


def test_me_needs_a_session(api: Any) -> None:
    answer = api(None).get("/api/v1/me/")

    # 401 with WWW-Authenticate: the API's first authentication is the agents' (docs/agents.md).
    assert answer.status_code == 401 and answer["WWW-Authenticate"] == 'Bearer realm="neonpro"'
    assert error_code(answer) == "not_authenticated"

"""Start-up checks: refuse to serve as a database role that could bypass row-level security.

Registered as a deployment check, so it runs with ``check --deploy`` and when ``serve`` starts
(``migrate`` legitimately runs as the table owner and is not affected).
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.db import DatabaseError

from neonpro.security.db import runtime_role_problems


@checks.register(checks.Tags.database, deploy=True)
def check_runtime_role(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if not databases or "default" not in databases:
        return []
    try:
        problems = runtime_role_problems("default")
    except DatabaseError as exc:
        return [checks.Error(f"Cannot inspect the database role: {exc}", id="security.E002")]
    return [
        checks.Error(
            problem,
            hint="Serve as the application role (NOSUPERUSER NOBYPASSRLS, owns nothing); create it with "
            "`python manage.py db roles` and run migrations as the owner role. See docs/database.md.",
            id="security.E001",
        )
        for problem in problems
    ]

"""What an agent may do: the fixed vocabulary of API scopes and how the identity carries them.

Guarantees:

* ``SCOPES`` is the whole vocabulary (``<resource>:<read|write>``); anything else is refused
  with a ValueError naming it, so a typo never becomes a scope nobody checks.
* A write scope needs its read scope (``records:write`` without ``records:read`` is refused):
  what an agent writes comes back in the response, and PostgreSQL checks an UPDATE's rows
  against the read policy too.
* The signed database identity cannot carry ``:`` (it separates the token's fields), so the
  identity holds each scope in its *claim* form, ``records.read``; row-level security reads
  that form (``neonpro.security.rls``), ``granted`` translates.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

RESOURCES = ("patients", "records", "appointments")
SCOPES = tuple(f"{resource}:{access}" for resource in RESOURCES for access in ("read", "write"))


def claim(scope: str) -> str:
    """The form the signed identity carries (``records:read`` -> ``records.read``)."""
    return scope.replace(":", ".")


def parse(value: str | Iterable[str]) -> tuple[str, ...]:
    """Scopes from ``"a,b"`` (or a list), in vocabulary order, without repeats.

    Raises ValueError for an empty set, an unknown scope, or a write scope without its read one.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    wanted = {item.strip() for item in items if item.strip()}
    if not wanted:
        raise ValueError(f"name at least one scope: {', '.join(SCOPES)}")
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope {', '.join(map(repr, unknown))}: the scopes are {', '.join(SCOPES)}")
    for scope in sorted(wanted):
        resource, access = scope.split(":")
        if access == "write" and f"{resource}:read" not in wanted:
            raise ValueError(f"{scope} needs {resource}:read as well")
    return tuple(scope for scope in SCOPES if scope in wanted)


def granted(identity: Any, scope: str) -> bool:
    """Whether ``identity`` (an agent's) carries ``scope``."""
    return claim(scope) in getattr(identity, "scopes", ())

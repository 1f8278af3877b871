"""Keyset (cursor) pagination for every list: a page costs what it returns.

Guarantees:

* A page holds at most ``MAX_PAGE_SIZE`` rows (``DEFAULT_PAGE_SIZE`` unless the client asks
  for fewer or more; more than the maximum is cut to it). It is one query,
  ``WHERE (keys) beyond (the last row's keys) ORDER BY keys LIMIT size + 1``: no OFFSET and
  no COUNT, so the thousandth page costs what the first does, and rows inserted or deleted
  during a walk never shift it (no row is returned twice; every row that exists for the
  whole walk is returned once).
* Every order ends in the primary key, so rows with equal sort values still have one place.
* Cursors are opaque. The position (the last row's sort values: dates of care, so PHI) is
  encrypted (``keys.crypto``, purpose ``session``) with associated data naming the list, its
  scope (the patient whose timeline it is) and the user it was issued to: a cursor reveals
  nothing, cannot be forged or edited, and works only for that list and that user. Anything
  else (tampered, truncated, malformed, another list's or user's) is a ``ValidationError``
  on ``cursor``, which the API answers with a 400, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from rest_framework.request import Request
from rest_framework.response import Response

from keys import crypto
from keys.exceptions import DecryptionError
from neonpro.security.context import Identity

M = TypeVar("M", bound=models.Model)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
CURSOR_PARAM = "cursor"
SIZE_PARAM = "page_size"
CURSOR_PURPOSE = "session"  # short-lived values handed to clients, never stored
CURSOR_PREFIX = "c1."
MAX_CURSOR_LENGTH = 512
BAD_CURSOR = "This cursor is not valid for this list; start again from the first page."
BAD_SIZE = f"Enter a whole number of rows per page, from 1 to {MAX_PAGE_SIZE}."


@dataclass(frozen=True)
class PageRequest:
    """What the client asked for: how many rows, and after which position (a raw cursor)."""

    size: int = DEFAULT_PAGE_SIZE
    cursor: str | None = None


@dataclass(frozen=True)
class Page(Generic[M]):
    items: list[M]
    next_cursor: str | None
    from_cursor: bool

    def audit_details(self) -> dict[str, Any]:
        """What the list's audit event says: the page, not every row on it."""
        return {
            "count": len(self.items),
            "first": self.items[0].pk if self.items else None,
            "last": self.items[-1].pk if self.items else None,
            "cursor": self.from_cursor,
            "more": self.next_cursor is not None,
        }


def page_request(params: Mapping[str, Any]) -> PageRequest:
    """The page asked for in query parameters ``page_size`` and ``cursor``.

    Raises ValidationError on ``page_size`` when it is not a whole number from 1 (a larger
    one is cut to ``MAX_PAGE_SIZE``) and on ``cursor`` when it is plainly not one of ours.
    """
    raw_size = params.get(SIZE_PARAM)
    size = DEFAULT_PAGE_SIZE
    if raw_size is not None:
        if not (isinstance(raw_size, str) and raw_size.isascii() and raw_size.isdigit() and len(raw_size) <= 6):
            raise ValidationError({SIZE_PARAM: BAD_SIZE})
        size = min(int(raw_size), MAX_PAGE_SIZE)
        if size < 1:
            raise ValidationError({SIZE_PARAM: BAD_SIZE})
    cursor = params.get(CURSOR_PARAM)
    if cursor is not None and (not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_LENGTH):
        raise ValidationError({CURSOR_PARAM: BAD_CURSOR})
    return PageRequest(size=size, cursor=cursor or None)


def paginate(
    queryset: models.QuerySet[M], *, order: Sequence[str], page: PageRequest, scope: str, identity: Identity
) -> Page[M]:
    """One page of ``queryset`` in ``order`` (field names, ``-`` for descending, the last
    one the primary key), after ``page.cursor`` if there is one.

    ``scope`` names the list and what it is filtered to (``records:<patient id>``): a cursor
    issued for one scope and user is refused for any other. Raises ValidationError (on
    ``cursor``) for a cursor that is not one this list issued to this user.
    """
    keys = [(name.lstrip("-"), name.startswith("-")) for name in order]
    context = _context(scope, identity)
    if page.cursor is not None:
        values = _decode(page.cursor, queryset.model, [name for name, _ in keys], context)
        queryset = queryset.filter(_beyond(keys, values))
    rows = list(queryset.order_by(*order)[: page.size + 1])
    more = len(rows) > page.size
    rows = rows[: page.size]
    next_cursor = _encode([getattr(rows[-1], name) for name, _ in keys], context) if more else None
    return Page(items=rows, next_cursor=next_cursor, from_cursor=page.cursor is not None)


def next_link(url: str, params: Mapping[str, Any], page: Page[Any]) -> str | None:
    """``url`` with the query of the next page (the other parameters kept), or None at the end."""
    if page.next_cursor is None:
        return None
    query = {key: value for key, value in params.items() if key != CURSOR_PARAM}
    query[CURSOR_PARAM] = page.next_cursor
    return f"{url}?{urlencode(query)}"


def _beyond(keys: list[tuple[str, bool]], values: list[Any]) -> Q:
    """Rows after ``values`` in the order: the first key beyond, or equal and the rest beyond.

    The leading ``<=`` (or ``>=``) repeats what the disjunction implies, so PostgreSQL can
    start an index range scan there instead of filtering every row.
    """
    condition: Q | None = None
    for (name, descending), value in reversed(list(zip(keys, values, strict=True))):
        step = Q(**{f"{name}__{'lt' if descending else 'gt'}": value})
        condition = step if condition is None else step | (Q(**{name: value}) & condition)
    assert condition is not None
    (lead, descending), first = keys[0], values[0]
    return Q(**{f"{lead}__{'lte' if descending else 'gte'}": first}) & condition


def _context(scope: str, identity: Identity) -> bytes:
    return f"neonpro.cursor.v1|{scope}|{identity.role}|{identity.user_id}".encode()


def _encode(values: list[Any], context: bytes) -> str:
    plain = json.dumps([value.isoformat() if hasattr(value, "isoformat") else str(value) for value in values])
    token = crypto.encrypt(plain.encode(), context=context, purpose=CURSOR_PURPOSE)
    return CURSOR_PREFIX + base64.urlsafe_b64encode(token).decode().rstrip("=")


def _decode(cursor: str, model: type[models.Model], names: list[str], context: bytes) -> list[Any]:
    try:
        if not cursor.startswith(CURSOR_PREFIX):
            raise ValueError("not a cursor")
        body = cursor[len(CURSOR_PREFIX) :]
        token = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        values = json.loads(crypto.decrypt(token, context=context))
        if not isinstance(values, list) or len(values) != len(names):
            raise ValueError("wrong shape")
        return [_field(model, name).to_python(value) for name, value in zip(names, values, strict=True)]
    except (ValueError, binascii.Error, DecryptionError, ValidationError):
        raise ValidationError({CURSOR_PARAM: BAD_CURSOR}) from None


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)  # an order names columns, never reverse relations
    return field


def paged_response(request: Request, page: Page[Any], data: Any) -> Response:
    """The page's rows as the JSON body (a list, as before pagination) and the next page as
    an RFC 8288 ``Link: <…>; rel="next"`` header (none on the last page)."""
    link = next_link(request.build_absolute_uri(request.path), request.query_params, page)
    return Response(data, headers={"Link": f'<{link}>; rel="next"'} if link else None)

"""Audit use cases: append an event, verify the chain, export for a SIEM.

Guarantees: ``record_event`` either stores the event or raises (callers treat a failure as
fatal: no audit, no PHI); appends are serialised with a PostgreSQL advisory lock so
concurrent writers extend one chain; ``details`` accepts only identifiers, numbers and
UUIDs, so free text (and with it PHI) cannot reach the log.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import ipaddress
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from keys.crypto import chain_hash, fingerprint
from neonpro.audit.models import GENESIS, AuditEvent
from neonpro.audit.operator import current_operator
from neonpro.audit.routers import audit_alias

SYSTEM_ACTOR_ID = uuid.UUID(int=0)


@dataclass(frozen=True)
class Actor:
    user_id: uuid.UUID | None
    role: str


SYSTEM_ACTOR = Actor(user_id=SYSTEM_ACTOR_ID, role="system")
CHAIN_LOCK = 0x4E50_4155  # "NPAU": one advisory lock id for the whole chain
# Detail keys and string values: identifiers that start with a letter (no digits first, no
# "@", no spaces, no run of four digits: an SSN, a phone number, an email, a date or a record
# number such as MRN-000123 can never pass, even behind a prefix), canonical UUIDs, or
# lowercase hex digests. A string that parses as a UUID passes only in the canonical form
# str(UUID) gives: the parser also takes uppercase, braces, "urn:uuid:", missing or stray
# hyphens, "0x" and underscores, which would let "123-45-6789-000…" (an SSN) through.
# Matched whole (fullmatch): "$" would also accept a trailing newline.
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]{0,79}")
_DIGIT_RUN = re.compile(r"[0-9]{4}")
_HEX = re.compile(r"[0-9a-f]{32,128}")
_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")


@dataclass(frozen=True)
class RequestMeta:
    actor_id: uuid.UUID | None = None
    actor_role: str = ""
    source_ip: str | None = None
    user_agent_hash: str = ""
    request_id: uuid.UUID | None = None


_NO_REQUEST = RequestMeta()
_request: contextvars.ContextVar[RequestMeta] = contextvars.ContextVar("neonpro_audit_request", default=_NO_REQUEST)


def bind_request(
    *, actor_id: uuid.UUID | None, actor_role: str, source_ip: str | None, user_agent: str, request_id: uuid.UUID
) -> contextvars.Token[RequestMeta]:
    """Remember who is asking and from where, for every event of this request."""
    meta = RequestMeta(
        actor_id=actor_id,
        actor_role=actor_role,
        source_ip=source_ip,
        user_agent_hash=fingerprint(user_agent.encode()) if user_agent else "",
        request_id=request_id,
    )
    return _request.set(meta)


def unbind_request(token: contextvars.Token[RequestMeta]) -> None:
    _request.reset(token)


def current_request() -> RequestMeta:
    return _request.get()


def _clean_details(details: dict[str, Any] | None) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in (details or {}).items():
        if not _is_token(key):
            raise ValueError(f"audit detail key {key!r} is not an identifier")
        clean[key] = _clean_value(key, value)
    return clean


def _clean_value(key: str, value: Any) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        canonical = _uuid_form(value)
        if canonical is not None:
            if canonical == value:
                return value
        elif _is_token(value) or _HEX.fullmatch(value):
            return value
        raise ValueError(f"audit detail {key!r} must be an identifier, number or UUID, never free text")
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean_value(key, item) for item in sorted(value, key=str)]
    raise ValueError(f"audit detail {key!r} has unsupported type {type(value).__name__}")


def record_event(
    action: str,
    *,
    outcome: str = AuditEvent.Outcome.SUCCESS,
    resource_type: str = "",
    resource_id: uuid.UUID | str | None = None,
    patient_id: uuid.UUID | str | None = None,
    purpose: str = "",
    actor: Any = None,
    details: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> AuditEvent:
    """Append one event to the chain and return it.

    ``actor`` is anything with ``user_id`` and ``role`` (an Identity); by default the actor
    bound to the current request. Raises ValueError on a malformed action, outcome or
    detail, and any database error unchanged: the caller must not proceed without audit.
    """
    if not _ACTION.fullmatch(action):
        raise ValueError(f"audit action {action!r} must look like 'resource.verb'")
    if outcome not in AuditEvent.Outcome.values:
        raise ValueError(f"audit outcome {outcome!r} is not one of {AuditEvent.Outcome.values}")
    meta = _request.get()
    actor_id = getattr(actor, "user_id", None) if actor is not None else meta.actor_id
    actor_role = getattr(actor, "role", "") if actor is not None else meta.actor_role
    operator = current_operator()
    if operator is not None and meta.request_id is None and actor_role in ("", "system"):
        # An operator command: the person who ran it, not an anonymous "system".
        actor_id, actor_role = SYSTEM_ACTOR_ID, "operator"
        details = {**operator.details(), **(details or {})}
    event = AuditEvent(
        actor_id=actor_id,
        actor_role=actor_role,
        action=action,
        resource_type=resource_type,
        resource_id=_as_uuid(resource_id),
        patient_id=_as_uuid(patient_id),
        outcome=outcome,
        purpose=purpose,
        source_ip=_canonical_ip(meta.source_ip),
        user_agent_hash=meta.user_agent_hash,
        request_id=meta.request_id,
        details=_clean_details(details),
    )
    alias = audit_alias()
    with transaction.atomic(using=alias):
        connection = connections[alias]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK])
        last = AuditEvent.objects.using(alias).order_by("-id").values_list("hash", flat=True).first()
        # UTC, as the database hands it back: the hash must match what verify reads.
        event.occurred_at = (now or timezone.now()).astimezone(dt.UTC)
        event.prev_hash = bytes(last) if last is not None else GENESIS
        event.hash = chain_hash(event.prev_hash, event.canonical())
        event.save(using=alias, force_insert=True)
    return event


def _is_token(value: str) -> bool:
    return _TOKEN.fullmatch(value) is not None and _DIGIT_RUN.search(value) is None


def _uuid_form(value: str) -> str | None:
    """The canonical form (lowercase, hyphenated 8-4-4-4-12) of a string that parses as a UUID
    in any of the spellings the parser takes; None when it does not parse."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _canonical_ip(value: str | None) -> str | None:
    """The address as PostgreSQL will store it (so the hash still matches when read back)."""
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    # PostgreSQL writes IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) IPv6
    # addresses with a dotted quad, where Python writes hex groups (::ffff:a00:1).
    packed = address.packed
    if len(packed) == 16 and packed[:10] == bytes(10):
        v4 = ipaddress.IPv4Address(packed[12:])
        if packed[10:12] == b"\xff\xff":
            return f"::ffff:{v4}"
        if packed[10:12] == bytes(2) and packed[12:14] != bytes(2):
            return f"::{v4}"
    return str(address)


def _as_uuid(value: uuid.UUID | str | None) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))  # None and "" do not parse either
    except ValueError:
        return None  # a malformed id in a URL is recorded as "no id", never echoed


@dataclass
class ChainReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(*, batch: int = 5000) -> ChainReport:
    """Walk the chain in id order; name the first event where it breaks, and why."""
    report = ChainReport()
    previous_hash = GENESIS
    previous_id: int | None = None
    for event in _iterate(batch):
        prev = bytes(event.prev_hash)
        if prev != previous_hash:
            where = "at the start" if previous_id is None else f"after event {previous_id}"
            report.problems.append(
                f"event {event.pk}: does not follow the previous event ({where}): an event was deleted, "
                "inserted or reordered"
            )
            return report
        if chain_hash(prev, event.canonical()) != bytes(event.hash):
            report.problems.append(f"event {event.pk}: content does not match its hash: the event was edited")
            return report
        previous_hash, previous_id = bytes(event.hash), event.pk
        report.checked += 1
    return report


def _iterate(batch: int) -> Iterator[AuditEvent]:
    last_id = 0
    alias = audit_alias()
    while True:
        chunk = list(AuditEvent.objects.using(alias).filter(id__gt=last_id).order_by("id")[:batch])
        if not chunk:
            return
        yield from chunk
        last_id = chunk[-1].pk


def export_events(*, since: dt.datetime | None = None, until: dt.datetime | None = None) -> Iterator[dict[str, Any]]:
    """Events as JSON-ready dicts (with their hashes) in chain order, for a SIEM."""
    queryset = AuditEvent.objects.using(audit_alias()).order_by("id")
    if since:
        queryset = queryset.filter(occurred_at__gte=since)
    if until:
        queryset = queryset.filter(occurred_at__lt=until)
    for event in queryset.iterator(chunk_size=2000):
        yield event.as_json()

"""Audit use cases: append an event, verify the chain, anchor it outside the database, export.

Guarantees: ``record_event`` either stores the event or raises :class:`AuditUnavailableError`
(callers treat it as fatal: no audit, no PHI; requests answer 503); appends are serialised
with a PostgreSQL advisory lock, waited for at most ``NEONPRO_AUDIT_LOCK_TIMEOUT`` seconds,
so concurrent writers extend one chain; each event's hash is an HMAC-SHA256 under the
active ``audit`` data key (its id on the row) of its predecessor's hash, its id and its
content, so nobody without the key can append, edit or renumber an event undetected;
``details`` accepts only identifiers, numbers and UUIDs, so free text (and with it PHI)
cannot reach the log. Rows from before keyed hashing (no key id, plain SHA-256) are
verified as legacy, and only as a prefix of the chain: the writer's first keyed event
after them is an ``audit.chain_anchor`` naming how many there are.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import ipaddress
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from keys.crypto import chain_hash, fingerprint, sign, verify_signature
from keys.exceptions import KeysError
from keys.keyring import keyring
from neonpro.audit import alerts
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
MAC_PURPOSE = "audit"  # the keys purpose whose HMAC data keys sign the chain and checkpoints
CHAIN_LABEL = b"neonpro.audit.chain.v1"
CHECKPOINT_LABEL = b"neonpro.audit.checkpoint.v1"
CHECKPOINT_FORMAT = "neonpro-audit-checkpoint-v1"
ANCHOR_ACTION = "audit.chain_anchor"
PROBE_ACTION = "audit.probe"
DEFAULT_LOCK_TIMEOUT = 10.0  # seconds an append waits for the chain lock (NEONPRO_AUDIT_LOCK_TIMEOUT)
MAX_PROBLEMS = 20  # verify stops after this many, so a flood of crafted rows stays readable
LOCK_NOT_AVAILABLE = "55P03"


class AuditUnavailableError(Exception):
    """No event could be appended, so the operation that needed one must not go ahead.

    ``reason`` says why in words an operator can act on (never PHI); the web layer answers
    503, and an alert has gone out.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"audit log unavailable ({reason}): the operation was refused and nothing was recorded")


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
    try:
        suspect = _append(event, now)
    except (DatabaseError, KeysError) as exc:
        reason = failure_reason(exc)
        alerts.audit_unavailable(action, reason)
        raise AuditUnavailableError(reason) from exc
    if suspect is not None:
        alerts.tampering(*suspect)
    return event


def failure_reason(exc: BaseException) -> str:
    """Why an append failed, for operators: the kind of failure, never a value."""
    if isinstance(exc, KeysError):
        return f"audit key unavailable ({type(exc).__name__})"
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    if sqlstate == LOCK_NOT_AVAILABLE:
        return "the chain lock is held by another session (lock timeout)"
    return f"database error ({type(exc).__name__}{f', SQLSTATE {sqlstate}' if sqlstate else ''})"


def link_bytes(event: AuditEvent) -> bytes:
    """What a keyed event's HMAC covers: its predecessor's hash, its id, its content."""
    return bytes(event.prev_hash) + int(event.pk).to_bytes(8, "big", signed=True) + event.canonical()


def _authentic(event: AuditEvent) -> bool:
    if event.key_id is None:  # legacy: plain SHA-256, proves consistency only
        return chain_hash(bytes(event.prev_hash), event.canonical()) == bytes(event.hash)
    return verify_signature(
        link_bytes(event), bytes(event.hash), purpose=MAC_PURPOSE, label=CHAIN_LABEL, key_id=event.key_id
    )


def _lock_timeout_ms() -> int:
    return max(1, int(float(getattr(settings, "NEONPRO_AUDIT_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT)) * 1000))


def _append(event: AuditEvent, now: dt.datetime | None) -> tuple[int, bytes] | None:
    """Insert ``event`` after the chain's last row, under the chain lock; return that last
    row's id and hash when the application did not write it (it is chained onto all the
    same: one crafted row must not stop the log), else None."""
    # The audit key first: creating it records an event of its own, which must not take an
    # id between this event's nextval and its insert.
    keyring.mac_keys(MAC_PURPOSE)
    alias = audit_alias()
    with transaction.atomic(using=alias):
        connection = connections[alias]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                # A session that holds the lock (crafted SQL) makes appends fail in seconds,
                # not hang every request.
                # One round trip: the target list is evaluated in order, the timeout first.
                cursor.execute(
                    "SELECT set_config('lock_timeout', %s, true), pg_advisory_xact_lock(%s)",
                    [f"{_lock_timeout_ms()}ms", CHAIN_LOCK],
                )
        # UTC, as the database hands it back: the hash must match what verify reads.
        moment = (now or timezone.now()).astimezone(dt.UTC)
        tail = AuditEvent.objects.using(alias).order_by("-id").first()
        suspect = None
        if tail is not None:
            if tail.key_id is not None:
                suspect = None if _authentic(tail) else (tail.pk, bytes(tail.hash))
            elif AuditEvent.objects.using(alias).filter(key_id__isnull=False).exists():
                suspect = (tail.pk, bytes(tail.hash))  # an unkeyed row after the chain was keyed
            else:
                tail = _insert(_anchor(tail, alias), tail, alias, moment)
        _insert(event, tail, alias, moment)
    return suspect


def _anchor(tail: AuditEvent, alias: str) -> AuditEvent:
    """The first keyed event after legacy (unkeyed) ones: how many there are, and their head."""
    legacy = AuditEvent.objects.using(alias).filter(key_id__isnull=True, id__gt=0).count()
    return AuditEvent(
        actor_id=SYSTEM_ACTOR_ID,
        actor_role=SYSTEM_ACTOR.role,
        action=ANCHOR_ACTION,
        outcome=AuditEvent.Outcome.SUCCESS,
        details=_clean_details(
            {"legacy_events": legacy, "legacy_last_id": tail.pk, "legacy_head": bytes(tail.hash).hex()}
        ),
    )


def _insert(event: AuditEvent, tail: AuditEvent | None, alias: str, moment: dt.datetime) -> AuditEvent:
    event.occurred_at = moment
    event.prev_hash = bytes(tail.hash) if tail is not None else GENESIS
    event.pk = _next_id(alias)
    event.key_id, event.hash = sign(link_bytes(event), purpose=MAC_PURPOSE, label=CHAIN_LABEL)
    event.save(using=alias, force_insert=True)
    return event


def _next_id(alias: str) -> int:
    """The id the event will have (its HMAC covers it): from the sequence on PostgreSQL, whose
    trigger refuses any other; on SQLite (one writer at a time) the next after the last."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT nextval(pg_get_serial_sequence('audit_auditevent', 'id'))")
        else:
            cursor.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM audit_auditevent")
        return int(cursor.fetchone()[0])


class _RollbackProbeError(Exception):
    """Raised to roll a probe append back."""


def probe_append() -> str | None:
    """Why no event can be appended right now, or None when one can: a readiness check that
    takes the chain lock, signs and inserts a probe event, and rolls it all back."""
    event = AuditEvent(
        actor_id=SYSTEM_ACTOR_ID, actor_role=SYSTEM_ACTOR.role, action=PROBE_ACTION, outcome=AuditEvent.Outcome.SUCCESS
    )
    try:
        with transaction.atomic(using=audit_alias()):
            _append(event, None)
            raise _RollbackProbeError
    except _RollbackProbeError:
        return None
    except (DatabaseError, KeysError) as exc:
        return failure_reason(exc)


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
    checked: int = 0  # events that verified
    legacy: int = 0  # of which unkeyed, from before keyed hashing (SHA-256 only)
    walked: int = 0  # events in the chain (rows with an id from the sequence), verified or not
    problems: list[str] = field(default_factory=list)
    last_id: int | None = None
    last_hash: bytes = GENESIS

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Checkpoint:
    """A signed head of the chain, kept outside the database (``audit checkpoint``)."""

    count: int
    last_id: int
    last_hash: bytes
    created_at: str
    key_id: int
    signature: bytes

    def signed_bytes(self) -> bytes:
        fields = {
            "format": CHECKPOINT_FORMAT,
            "count": self.count,
            "last_id": self.last_id,
            "last_hash": self.last_hash.hex(),
            "created_at": self.created_at,
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    def as_json(self) -> str:
        data = json.loads(self.signed_bytes())
        data.update(key_id=self.key_id, signature=self.signature.hex())
        return json.dumps(data, sort_keys=True, indent=2) + "\n"


class CheckpointError(ValueError):
    """A checkpoint that cannot be made, read or trusted; the message says which."""


def make_checkpoint(report: ChainReport, *, now: dt.datetime | None = None) -> Checkpoint:
    """Sign the head of a chain ``verify_chain`` found intact."""
    if not report.ok or report.last_id is None:
        raise CheckpointError("only an intact chain with at least one event can be checkpointed")
    created_at = (now or timezone.now()).astimezone(dt.UTC).isoformat()
    unsigned = Checkpoint(report.walked, report.last_id, report.last_hash, created_at, 0, b"")
    key_id, tag = sign(unsigned.signed_bytes(), purpose=MAC_PURPOSE, label=CHECKPOINT_LABEL)
    return Checkpoint(report.walked, report.last_id, report.last_hash, created_at, key_id, tag)


def read_checkpoint(text: str) -> Checkpoint:
    """The checkpoint in ``text``, its signature checked; CheckpointError says what is wrong."""
    try:
        data = json.loads(text)
    except ValueError:
        raise CheckpointError("not a checkpoint file (not JSON)") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"not a NeonPro audit checkpoint (format {CHECKPOINT_FORMAT} expected)")
    try:
        checkpoint = Checkpoint(
            count=_integer(data["count"]),
            last_id=_integer(data["last_id"]),
            last_hash=bytes.fromhex(data["last_hash"]),
            created_at=_text(data["created_at"]),
            key_id=_integer(data["key_id"]),
            signature=bytes.fromhex(data["signature"]),
        )
    except (KeyError, TypeError, ValueError):
        raise CheckpointError("the checkpoint is incomplete or malformed") from None
    if not verify_signature(
        checkpoint.signed_bytes(),
        checkpoint.signature,
        purpose=MAC_PURPOSE,
        label=CHECKPOINT_LABEL,
        key_id=checkpoint.key_id,
    ):
        raise CheckpointError(
            "the checkpoint's signature does not verify: the file was altered or forged "
            f"(or audit key {checkpoint.key_id} was destroyed)"
        )
    return checkpoint


def _integer(value: Any) -> int:
    if type(value) is not int:
        raise TypeError("not an integer")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def verify_chain(*, batch: int = 5000, checkpoint: Checkpoint | None = None) -> ChainReport:
    """Walk every row in id order and name each event where the chain breaks, and why
    (at most :data:`MAX_PROBLEMS`); with ``checkpoint``, also that the chain up to its last
    event is still the one it signed."""
    report = ChainReport()
    previous_hash, previous_id, keyed = GENESIS, None, False
    seen_checkpoint = False
    for event in _iterate(batch):
        problems = [_problem(event, previous_hash, previous_id, keyed)]
        if event.pk > 0:
            report.walked += 1
            if problems[0] is None:
                report.checked += 1
                report.legacy += event.key_id is None
            keyed = keyed or event.key_id is not None
            previous_hash, previous_id = bytes(event.hash), event.pk
            if checkpoint is not None and event.pk == checkpoint.last_id:
                seen_checkpoint = True
                problems.append(_against(checkpoint, previous_hash, report.walked))
        report.problems.extend(problem for problem in problems if problem)
        if len(report.problems) >= MAX_PROBLEMS:
            report.problems.append(f"(stopped after {MAX_PROBLEMS} problems)")
            return report
    if checkpoint is not None and not seen_checkpoint:
        report.problems.append(
            f"the checkpoint's last event {checkpoint.last_id} is missing: the chain was truncated or rewritten"
        )
    report.last_id, report.last_hash = previous_id, previous_hash
    return report


def _problem(event: AuditEvent, previous_hash: bytes, previous_id: int | None, keyed: bool) -> str | None:
    if event.pk <= 0:
        return f"event {event.pk}: its id is not from the sequence: a row inserted by hand, outside the chain"
    if bytes(event.prev_hash) != previous_hash:
        where = "at the start" if previous_id is None else f"after event {previous_id}"
        return (
            f"event {event.pk}: does not follow the previous event ({where}): an event was deleted, "
            "inserted or reordered"
        )
    if event.key_id is None and keyed:
        return f"event {event.pk}: has no audit key id after the chain was keyed: it was forged"
    if not _authentic(event):
        return (
            f"event {event.pk}: content does not match its hash: the event was edited, or forged without the audit key"
        )
    return None


def _against(checkpoint: Checkpoint, head: bytes, count: int) -> str | None:
    if head != checkpoint.last_hash or count != checkpoint.count:
        return (
            f"event {checkpoint.last_id}: the chain up to it is not the one checkpointed at "
            f"{checkpoint.created_at} ({checkpoint.count} events): events before it were rewritten, "
            "deleted or inserted"
        )
    return None


def _iterate(batch: int) -> Iterator[AuditEvent]:
    """Every row, whatever its id (a crafted row with id <= 0 is named, not skipped)."""
    queryset = AuditEvent.objects.using(audit_alias()).order_by("id")
    chunk = list(queryset[:batch])
    while chunk:
        yield from chunk
        chunk = list(queryset.filter(id__gt=chunk[-1].pk)[:batch])


def export_events(*, since: dt.datetime | None = None, until: dt.datetime | None = None) -> Iterator[dict[str, Any]]:
    """Events as JSON-ready dicts (with their hashes) in chain order, for a SIEM."""
    queryset = AuditEvent.objects.using(audit_alias()).order_by("id")
    if since:
        queryset = queryset.filter(occurred_at__gte=since)
    if until:
        queryset = queryset.filter(occurred_at__lt=until)
    for event in queryset.iterator(chunk_size=2000):
        yield event.as_json()

"""The session store (``SESSION_ENGINE = "neonpro.accounts.sessions"``) and how sessions end.

Guarantees:

* The database never holds a session token: a row is found by the token's keyed hash
  (``keys.crypto.blind_index``, purpose ``index``, looked up under every index key still in
  use), and its data is encrypted under the ``session`` data key with associated data naming
  the row, its user, its start and its digest, so a copy of the table gives no session and a
  row's data cannot be moved to another row. A token that is not one this store makes is
  never looked up.
* A session ends server-side at the first of: the idle timeout (``NEONPRO_SESSION_IDLE_MINUTES``
  since its last request), the absolute lifetime (``NEONPRO_SESSION_ABSOLUTE_HOURS`` since it
  started or its user signed in), a binding mismatch (user agent, and the IP address within a
  prefix, when configured), unreadable data, and every ``end_sessions`` call (sign-out,
  password and MFA changes, deactivation, privilege changes, the user's own list, an
  administrator). The next request with its cookie gets a new, empty session; each automatic
  end is audited (``session.timeout`` with the limit, ``session.binding_mismatch``,
  ``session.end`` with the reason). Limits lowered in the settings apply to sessions already
  running.
* A token is rotated in place (``cycle_key``: the row keeps its id, a new token and digest
  replace the old ones) at sign-in, on break-glass and on a privilege change of the user's own
  session; the old token finds nothing afterwards.
* ``last_seen_at`` (and with it the idle deadline) is written at most once a minute (a quarter
  of the idle time when that is shorter), so the idle timeout is enforced to within that on
  the strict side.
* At sign-in, a user keeps at most ``NEONPRO_SESSION_MAX_PER_USER`` sessions: the oldest end.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import ipaddress
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import VALID_KEY_CHARS, CreateError, SessionBase, UpdateError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import get_random_string

from keys import crypto
from keys.exceptions import DecryptionError
from neonpro.accounts.session_models import USER_AGENT_LENGTH, UserSession
from neonpro.audit.services import SYSTEM_ACTOR, record_event

RESOURCE = "accounts.usersession"
TOKEN_CONTEXT = b"neonpro.accounts.session-token"
DATA_CONTEXT = "neonpro.accounts.usersession.data.v1"
TOKEN_LENGTH = 32  # characters of VALID_KEY_CHARS: 165 bits
LAST_SEEN_EVERY = dt.timedelta(minutes=1)
CREATE_ATTEMPTS = 3
PURGE_BATCH = 500
_KEY_CHARS = frozenset(VALID_KEY_CHARS)


class SessionSettings:
    """The NEONPRO_SESSION_* settings, read at call time (docs/sessions.md)."""

    @property
    def idle(self) -> dt.timedelta:
        seconds = getattr(settings, "NEONPRO_SESSION_IDLE_SECONDS", 0)  # 0: the minutes decide
        return dt.timedelta(seconds=seconds or 60 * getattr(settings, "NEONPRO_SESSION_IDLE_MINUTES", 15))

    @property
    def lifetime(self) -> dt.timedelta:
        return dt.timedelta(hours=getattr(settings, "NEONPRO_SESSION_ABSOLUTE_HOURS", 12))

    @property
    def bind_ip(self) -> bool:
        return bool(getattr(settings, "NEONPRO_SESSION_BIND_IP", False))

    @property
    def ipv4_prefix(self) -> int:
        return int(getattr(settings, "NEONPRO_SESSION_BIND_IPV4_PREFIX", 32))

    @property
    def ipv6_prefix(self) -> int:
        return int(getattr(settings, "NEONPRO_SESSION_BIND_IPV6_PREFIX", 64))

    @property
    def bind_user_agent(self) -> bool:
        return bool(getattr(settings, "NEONPRO_SESSION_BIND_USER_AGENT", True))

    @property
    def max_per_user(self) -> int:
        return int(getattr(settings, "NEONPRO_SESSION_MAX_PER_USER", 5))

    def limits(self, now: dt.datetime) -> dict[str, Any]:
        return {"now": now, "idle": self.idle, "lifetime": self.lifetime}


session_settings = SessionSettings()

# The session of the request being handled (neonpro.accounts.session_middleware), so account
# changes made in it can tell the user's own session from their others.
_current: contextvars.ContextVar[SessionStore | None] = contextvars.ContextVar("neonpro_session", default=None)


def bind_current_session(session: SessionStore | None) -> contextvars.Token[SessionStore | None]:
    return _current.set(session)


def unbind_current_session(token: contextvars.Token[SessionStore | None]) -> None:
    _current.reset(token)


def own_session(user: Any) -> SessionStore | None:
    """The current request's session when it is ``user``'s own, else None."""
    session = _current.get()
    if session is None or session.session_key is None or session.get(SESSION_KEY) != str(user.pk):
        return None
    return session


def own_session_key(user: Any) -> str | None:
    session = own_session(user)
    return session.session_key if session is not None else None


def _digest(token: str) -> bytes:
    return crypto.blind_index(token, context=TOKEN_CONTEXT)


def _digests(token: str) -> list[bytes]:
    return crypto.blind_index_candidates(token, context=TOKEN_CONTEXT)


def _valid_ip(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(value or ""))
    except ValueError:
        return None


def _same_network(bound: str, ip: str | None) -> bool:
    if ip is None:
        return False
    first, second = ipaddress.ip_address(bound), ipaddress.ip_address(ip)
    if first.version != second.version:
        return False
    prefix = session_settings.ipv4_prefix if first.version == 4 else session_settings.ipv6_prefix
    return second in ipaddress.ip_network(f"{first}/{prefix}", strict=False)


class SessionStore(SessionBase):
    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._row: UserSession | None = None
        self._client: tuple[str | None, str] | None = None

    # -- what the request tells the store -----------------------------------------------
    def bind_client(self, ip: str | None, user_agent: str) -> None:
        """The caller's address and user agent: recorded at start and sign-in, compared after."""
        self._client = (_valid_ip(ip), user_agent[:USER_AGENT_LENGTH])

    @property
    def public_id(self) -> uuid.UUID | None:
        """The session's id in lists and the API (never the token); None when there is none."""
        self._get_session()  # type: ignore[attr-defined]
        return self._row.pk if self._row is not None else None

    # -- SessionBase ----------------------------------------------------------------------
    def _validate_session_key(self, key: str | None) -> bool:
        return bool(key) and len(key) == TOKEN_LENGTH and set(key) <= _KEY_CHARS  # type: ignore[arg-type]

    def _get_new_session_key(self) -> str:
        return get_random_string(TOKEN_LENGTH, VALID_KEY_CHARS)  # unique by the digest's constraint

    def exists(self, session_key: str) -> bool:
        return UserSession.objects.filter(token_digest__in=_digests(session_key)).exists()

    def load(self) -> dict[str, Any]:
        row = UserSession.objects.filter(token_digest__in=_digests(self.session_key)).first()  # type: ignore[arg-type]
        if row is None:
            return self._forget()
        now = timezone.now()
        limit = row.limit_reached(**session_settings.limits(now))
        if limit is not None:
            _end(row.pk, row.user_id, "session.timeout", {"limit": limit}, actor=SYSTEM_ACTOR)
            return self._forget()
        mismatch = self._binding_mismatch(row)
        if mismatch is not None:
            _end(row.pk, row.user_id, "session.binding_mismatch", {"bound": mismatch}, outcome="denied")
            return self._forget()
        try:
            data: dict[str, Any] = self.serializer().loads(crypto.decrypt(bytes(row.data), context=_context(row)))
        except DecryptionError:
            _end(row.pk, row.user_id, "session.end", {"reason": "unreadable"}, outcome="error", actor=SYSTEM_ACTOR)
            return self._forget()
        if now - row.last_seen_at >= min(LAST_SEEN_EVERY, session_settings.idle / 4):
            row.last_seen_at, row.idle_expires_at = now, min(now + session_settings.idle, row.expires_at)
            UserSession.objects.filter(pk=row.pk).update(
                last_seen_at=row.last_seen_at, idle_expires_at=row.idle_expires_at
            )
        self._row = row
        return data

    def create(self) -> None:
        for _attempt in range(CREATE_ATTEMPTS):
            self._session_key = self._get_new_session_key()
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise CreateError(f"no new session token was unique in {CREATE_ATTEMPTS} attempts")

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        data = self._get_session(no_load=must_create)  # type: ignore[attr-defined]
        now = timezone.now()
        user_id = _user_of(data)
        if must_create:
            self._insert(data, user_id, now)
            return None
        row = self._row
        if row is None:
            raise UpdateError
        if user_id is not None and row.user_id != user_id:  # signed in: the lifetime starts now
            row.created_at, row.expires_at = now, now + session_settings.lifetime
            row.ip_address, row.user_agent = self._client or (row.ip_address, row.user_agent)
        row.user_id, row.last_seen_at = user_id, now
        row.idle_expires_at = min(now + session_settings.idle, row.expires_at)
        row.data = self._seal(data, row)
        fields = ("user_id", "data", "created_at", "expires_at", "last_seen_at", "idle_expires_at")
        updated = UserSession.objects.filter(pk=row.pk, token_digest=row.token_digest).update(
            **{name: getattr(row, name) for name in fields}, ip_address=row.ip_address, user_agent=row.user_agent
        )
        if not updated:
            raise UpdateError  # ended (or rotated) by another request meanwhile
        return None

    def delete(self, session_key: str | None = None) -> None:
        key = self.session_key if session_key is None else session_key
        if key is None:
            return
        UserSession.objects.filter(token_digest__in=_digests(key)).delete()
        if key == self.session_key:
            self._row = None

    def cycle_key(self) -> None:
        """A new token for the same session: its id, start and data stay, the old token dies."""
        data = dict(self._session)  # type: ignore[attr-defined]
        row = self._row
        if row is None:
            self.create()
            self._session_cache = data
            return
        key = self._get_new_session_key()
        old_digest, row.token_digest = row.token_digest, _digest(key)
        row.data = self._seal(data, row)
        UserSession.objects.filter(pk=row.pk, token_digest=old_digest).update(
            token_digest=row.token_digest, data=row.data
        )
        self._session_key = key
        self._session_cache = data
        self.modified = True

    async def acycle_key(self) -> None:
        await sync_to_async(self.cycle_key)()

    @classmethod
    def clear_expired(cls) -> None:
        purge_expired_sessions()

    # -- helpers --------------------------------------------------------------------------
    def _forget(self) -> dict[str, Any]:
        """No session under this token: the next save makes a new one (never under this token)."""
        self._session_key = None
        self._row = None
        return {}

    def _binding_mismatch(self, row: UserSession) -> str | None:
        if self._client is None:  # not a request (a test client's session, a task)
            return None
        ip, agent = self._client
        if session_settings.bind_user_agent and row.user_agent != agent:
            return "user_agent"
        if session_settings.bind_ip and row.ip_address and not _same_network(row.ip_address, ip):
            return "ip"
        return None

    def _insert(self, data: dict[str, Any], user_id: uuid.UUID | None, now: dt.datetime) -> None:
        ip, agent = self._client or (None, "")
        expires = now + session_settings.lifetime
        row = UserSession(
            id=uuid.uuid4(),
            token_digest=_digest(self.session_key),  # type: ignore[arg-type]
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
            expires_at=expires,
            idle_expires_at=min(now + session_settings.idle, expires),
            ip_address=ip,
            user_agent=agent,
        )
        row.data = self._seal(data, row)
        try:
            with transaction.atomic():
                row.save(force_insert=True)
        except IntegrityError as exc:
            raise CreateError from exc
        self._row = row

    def _seal(self, data: dict[str, Any], row: UserSession) -> bytes:
        return crypto.encrypt(self.serializer().dumps(data), context=_context(row), purpose="session")


def _context(row: UserSession) -> bytes:
    started = row.created_at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    user = str(row.user_id) if row.user_id else "-"
    return f"{DATA_CONTEXT}:{row.pk}:{user}:{started}:{bytes(row.token_digest).hex()}".encode()


def _user_of(data: dict[str, Any]) -> uuid.UUID | None:
    value = data.get(SESSION_KEY)
    return None if value is None else uuid.UUID(str(value))


def _end(
    session_id: uuid.UUID,
    user_id: uuid.UUID | None,
    action: str,
    details: dict[str, Any],
    *,
    outcome: str = "success",
    actor: Any = None,
) -> int:
    """Delete one session; audit it when it was still there (and had a user). Returns 1 or 0."""
    deleted, _ = UserSession.objects.filter(pk=session_id).delete()
    if deleted and user_id is not None:
        record_event(
            action,
            outcome=outcome,
            resource_type=RESOURCE,
            resource_id=session_id,
            actor=actor,
            details={**details, "user": user_id},
        )
    return deleted


# -- how sessions end ---------------------------------------------------------------------
def end_session(session: UserSession, *, reason: str) -> bool:
    """End one session, audited as ``session.end`` with ``reason``; False if it had ended already."""
    return bool(_end(session.pk, session.user_id, "session.end", {"reason": reason}))


def end_sessions(user: Any, *, reason: str, keep_session_key: str | None = None) -> int:
    """End every live session of ``user`` but the one whose token is ``keep_session_key``;
    return how many ended. Each is audited as ``session.end`` with ``reason`` (an
    identifier such as ``password_change``: raises ValueError for free text)."""
    rows = UserSession.objects.live(**session_settings.limits(timezone.now())).filter(user_id=user.pk)
    if keep_session_key:
        rows = rows.exclude(token_digest__in=_digests(keep_session_key))
    return sum(_end(pk, user.pk, "session.end", {"reason": reason}) for pk in rows.values_list("pk", flat=True))


def limit_sessions(user: Any, *, keep_session_key: str | None) -> int:
    """At sign-in: end the oldest of ``user``'s other sessions beyond the cap (the signing-in
    session, ``keep_session_key``, is the newest). Returns how many ended."""
    rows = UserSession.objects.live(**session_settings.limits(timezone.now())).filter(user_id=user.pk)
    if keep_session_key:
        rows = rows.exclude(token_digest__in=_digests(keep_session_key))
    oldest = rows.order_by("-created_at", "-pk").values_list("pk", flat=True)[session_settings.max_per_user - 1 :]
    return sum(_end(pk, user.pk, "session.end", {"reason": "limit"}, actor=SYSTEM_ACTOR) for pk in list(oldest))


def end_sessions_after_privilege_change(user: Any) -> int:
    """A user's role, flags, groups or permissions changed: their sessions started with other
    rights. Every other session ends; the one making the change (the user's own, if it is)
    gets a new token. Returns how many ended."""
    own = own_session(user)
    ended = end_sessions(user, reason="privilege_change", keep_session_key=own.session_key if own else None)
    if own is not None:
        own.cycle_key()
    return ended


def rotate_session(request: HttpRequest) -> None:
    """A new token for the request's session (after an elevation such as break-glass), if it has one."""
    if request.session.session_key is not None:
        request.session.cycle_key()


def purge_expired_sessions(*, batch: int = PURGE_BATCH) -> int:
    """Delete every session past a limit; audit ``session.timeout`` for those with a user.
    Returns how many were deleted. Safe to run concurrently with requests and itself."""
    expired = UserSession.objects.expired(**session_settings.limits(timezone.now()))
    purged = 0
    while ids := list(expired.filter(user__isnull=True).values_list("pk", flat=True)[:batch]):
        purged += UserSession.objects.filter(pk__in=ids, user__isnull=True).delete()[0]
    while rows := list(expired.filter(user__isnull=False).order_by("idle_expires_at")[:batch]):
        for row in rows:
            limit = row.limit_reached(**session_settings.limits(timezone.now()))
            purged += _end(row.pk, row.user_id, "session.timeout", {"limit": limit, "purged": True}, actor=SYSTEM_ACTOR)
    return purged

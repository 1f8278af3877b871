"""The session store: what the database holds, timeouts, binding, rotation, purge.

Sessions are made by the real sign-in form (CSRF enforced) and used through real requests;
time moves with time-machine (the store reads the application's clock, never the database's).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import Any

import pytest
import time_machine
from asgiref.sync import async_to_sync
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.core.management import call_command
from django.db import connection
from django.test import RequestFactory

from keys import crypto, envelope
from neonpro.accounts import sessions
from neonpro.accounts.session_middleware import SessionGuardMiddleware
from neonpro.accounts.session_models import UserSession
from neonpro.accounts.sessions import SessionStore, _context, _same_network, own_session, session_settings
from neonpro.accounts.tasks import purge_expired_sessions_task
from neonpro.audit.models import AuditEvent
from tests.accounts.session_helpers import (
    COOKIE,
    browser_client,
    cookie_of,
    is_signed_in,
    sign_in,
    with_cookie,
)

pytestmark = pytest.mark.django_db
START = dt.datetime(2030, 3, 4, 8, 0, tzinfo=dt.UTC)


def _row(client: Any) -> UserSession:
    return UserSession.objects.get(pk=SessionStore(cookie_of(client)).public_id)


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


# -- what a copy of the table gives ---------------------------------------------------------
def test_the_table_holds_a_keyed_hash_of_the_token_and_ciphertext_never_the_token(user_factory: Any) -> None:
    user = user_factory("clinician")
    client = sign_in(user)
    token = cookie_of(client)

    with connection.cursor() as cursor:  # what a DBA's copy holds, every column as stored
        cursor.execute("SELECT * FROM accounts_usersession WHERE user_id = %s", [user.pk])
        (row,) = cursor.fetchall()
    stored = b"|".join(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for v in row)
    session = _row(client)
    digest, data = bytes(session.token_digest), bytes(session.data)

    assert token.encode() not in stored
    assert digest not in (hashlib.sha256(token.encode()).digest()[:20], token.encode()[:20])  # keyed, not a plain hash
    assert len(digest) == 20 and digest == crypto.blind_index(token, context=sessions.TOKEN_CONTEXT)
    assert data[0] == envelope.VERSION and b"_auth_user_id" not in data and str(user.pk).encode() not in data
    assert json.loads(crypto.decrypt(data, context=_context(session)))["_auth_user_id"] == str(user.pk)
    for forged in (digest.hex()[:32], digest.hex(), data.hex()[:32], str(session.pk)):
        assert not is_signed_in(with_cookie(forged)), forged  # no stored value is a cookie that works
    assert is_signed_in(client)


def test_session_data_moved_to_another_row_does_not_open_and_ends_that_session(user_factory: Any) -> None:
    alice, mallory = user_factory("clinician"), user_factory("clinician")
    victim, attacker = sign_in(alice), sign_in(mallory)
    UserSession.objects.filter(pk=_row(attacker).pk).update(data=_row(victim).data)

    assert not is_signed_in(attacker)  # Alice's data in Mallory's row: unreadable, not Alice's session
    assert not UserSession.objects.filter(user=mallory).exists()
    (event,) = _events("session.end")
    assert event.outcome == "error" and event.details == {"reason": "unreadable", "user": str(mallory.pk)}
    assert is_signed_in(victim)


def test_a_token_this_store_never_makes_is_not_looked_up() -> None:
    for junk in ("", "short", "A" * 32, "a" * 31, "a" * 33, "a" * 31 + "-", "a" * 10_000):
        assert SessionStore(junk).session_key is None
    assert SessionStore("a" * 32).session_key == "a" * 32


# -- timeouts ---------------------------------------------------------------------------------
def test_an_idle_session_ends_at_its_next_request_and_the_timeout_is_audited(user_factory: Any) -> None:
    user = user_factory("clinician")
    with time_machine.travel(START, tick=False) as clock:
        client = sign_in(user)
        session_id = _row(client).pk
        clock.shift(dt.timedelta(minutes=15))
        answer = client.get("/api/v1/me/", secure=True)

    assert answer.status_code in (401, 403)
    assert answer.cookies[COOKIE].value == ""  # the browser is told to forget the cookie
    assert not UserSession.objects.filter(pk=session_id).exists()
    (event,) = _events("session.timeout")
    assert event.resource_id == session_id and event.details == {"limit": "idle", "user": str(user.pk)}
    assert event.actor_role == "system" and event.source_ip == "192.0.2.10"
    assert event.request_id == uuid.UUID(answer["X-Request-ID"])  # the request that presented the cookie


def test_requests_keep_a_session_alive_and_last_seen_is_written_at_most_once_a_minute(user_factory: Any) -> None:
    user = user_factory("clinician")
    with time_machine.travel(START, tick=False) as clock:
        client = sign_in(user)
        clock.shift(dt.timedelta(seconds=50))
        assert is_signed_in(client)
        assert _row(client).last_seen_at == START  # not written: less than a minute since
        clock.shift(dt.timedelta(seconds=20))
        assert is_signed_in(client)
        assert _row(client).last_seen_at == START + dt.timedelta(seconds=70)
        assert _row(client).idle_expires_at == START + dt.timedelta(seconds=70, minutes=15)
        clock.shift(dt.timedelta(minutes=14, seconds=59))  # 16 minutes after signing in
        assert is_signed_in(client)

    assert not _events("session.timeout")


def test_the_absolute_lifetime_ends_a_session_in_use(user_factory: Any, settings: Any) -> None:
    settings.NEONPRO_SESSION_ABSOLUTE_HOURS = 1
    user = user_factory("clinician")
    with time_machine.travel(START, tick=False) as clock:
        client = sign_in(user)
        assert _row(client).expires_at == START + dt.timedelta(hours=1)
        for _ in range(5):
            clock.shift(dt.timedelta(minutes=10))
            assert is_signed_in(client)
        assert _row(client).idle_expires_at == START + dt.timedelta(hours=1)  # never past the absolute end
        clock.shift(dt.timedelta(minutes=10))
        assert not is_signed_in(client)

    (event,) = _events("session.timeout")
    assert event.details == {"limit": "absolute", "user": str(user.pk)}


def test_lowered_limits_apply_to_sessions_already_running(user_factory: Any, settings: Any) -> None:
    idle_user, old_user = user_factory("clinician"), user_factory("clinician")
    with time_machine.travel(START, tick=False) as clock:
        idle, old = sign_in(idle_user), sign_in(old_user)
        clock.shift(dt.timedelta(minutes=6))
        assert is_signed_in(old)
        settings.NEONPRO_SESSION_IDLE_MINUTES = 5
        assert not is_signed_in(idle)  # its stored deadline was 15 minutes after its last request
        settings.NEONPRO_SESSION_IDLE_MINUTES = 15
        settings.NEONPRO_SESSION_ABSOLUTE_HOURS = 1
        assert is_signed_in(old)
        clock.shift(dt.timedelta(minutes=55))
        assert not is_signed_in(old)  # its stored end was 12 hours after signing in

    assert [e.details["limit"] for e in _events("session.timeout")] == ["idle", "absolute"]


def test_the_settings_and_their_defaults(settings: Any) -> None:
    from django.conf import settings as configured

    for name in [n for n in dir(configured) if n.startswith("NEONPRO_SESSION_")]:
        delattr(settings, name)
    assert session_settings.idle == dt.timedelta(minutes=15)
    assert session_settings.lifetime == dt.timedelta(hours=12)
    assert (session_settings.bind_user_agent, session_settings.bind_ip) == (True, False)
    assert (session_settings.ipv4_prefix, session_settings.ipv6_prefix, session_settings.max_per_user) == (32, 64, 5)


# -- binding ---------------------------------------------------------------------------------
def test_another_user_agent_ends_the_session_and_is_audited(user_factory: Any) -> None:
    user = user_factory("clinician")
    client = sign_in(user)
    thief = with_cookie(cookie_of(client), agent="curl/8.5.0", ip="203.0.113.9")

    assert not is_signed_in(thief)
    assert not is_signed_in(client)  # ended for everyone: the owner signs in again
    (event,) = _events("session.binding_mismatch")
    assert event.outcome == "denied" and event.details == {"bound": "user_agent", "user": str(user.pk)}
    assert event.source_ip == "203.0.113.9"


def test_the_address_is_not_bound_unless_configured(user_factory: Any) -> None:
    client = sign_in(user_factory("clinician"), ip="192.0.2.10")
    roaming = with_cookie(cookie_of(client), ip="198.51.100.7")

    assert is_signed_in(roaming)
    assert _row(client).ip_address == "192.0.2.10"  # where it signed in


def test_a_bound_address_may_move_within_its_prefix_only(user_factory: Any, settings: Any) -> None:
    settings.NEONPRO_SESSION_BIND_IP = True
    settings.NEONPRO_SESSION_BIND_IPV4_PREFIX = 24
    user = user_factory("clinician")
    client = sign_in(user, ip="192.0.2.10")

    assert is_signed_in(with_cookie(cookie_of(client), ip="192.0.2.200"))
    assert not is_signed_in(with_cookie(cookie_of(client), ip="192.0.3.10"))
    (event,) = _events("session.binding_mismatch")
    assert event.details == {"bound": "ip", "user": str(user.pk)}


def test_address_comparison(settings: Any) -> None:
    settings.NEONPRO_SESSION_BIND_IPV6_PREFIX = 64
    assert _same_network("2001:db8:1:2::1", "2001:db8:1:2:ffff::9")
    assert not _same_network("2001:db8:1:2::1", "2001:db8:1:3::1")
    assert not _same_network("192.0.2.10", "::ffff:192.0.2.10")  # another family is another network
    assert not _same_network("192.0.2.10", None)


def test_an_address_that_is_not_one_is_not_recorded() -> None:
    store = SessionStore()
    store.bind_client("203.0.113.9, 10.0.0.1", "x" * 1000)
    store["k"] = "v"
    store.save()

    row = UserSession.objects.get(pk=store.public_id)
    assert row.ip_address is None and row.user_agent == "x" * 256


def test_a_session_bound_to_no_address_is_not_compared(settings: Any) -> None:
    settings.NEONPRO_SESSION_BIND_IP = True
    store = SessionStore()
    store["k"] = "v"
    store.save()  # made outside a request: no address
    again = SessionStore(store.session_key)
    again.bind_client("198.51.100.7", "")

    assert again["k"] == "v"


# -- the store's contract ------------------------------------------------------------------------
def test_rotating_keeps_the_row_and_data_and_kills_the_old_token() -> None:
    store = SessionStore()
    store["step"] = "password-checked"
    store.save()
    old, row_id = store.session_key, store.public_id

    store.cycle_key()
    store.save()

    assert store.session_key != old and store.public_id == row_id
    assert not SessionStore().exists(old) and SessionStore().exists(store.session_key)
    assert SessionStore(old).load() == {}
    assert SessionStore(store.session_key)["step"] == "password-checked"


def test_rotating_a_session_never_saved_creates_it_and_async_rotation_works() -> None:
    store = SessionStore()
    store["a"] = 1
    store.cycle_key()
    first = store.session_key
    async_to_sync(store.acycle_key)()

    assert first is not None and store.session_key != first
    assert SessionStore(store.session_key)["a"] == 1


def test_saving_a_session_that_ended_meanwhile_is_refused() -> None:
    store = SessionStore()
    store["a"] = 1
    store.save()
    other = SessionStore(store.session_key)
    other["a"] = 2  # loaded
    UserSession.objects.all().delete()  # ended by another request
    with pytest.raises(UpdateError):
        other.save()

    store.delete()
    with pytest.raises(UpdateError):
        store.save()


def test_deleting_by_key_and_without_one() -> None:
    first, second = SessionStore(), SessionStore()
    for store in (first, second):
        store["a"] = 1
        store.save()

    first.delete(second.session_key)
    SessionStore().delete()  # no key: nothing to delete

    assert first.exists(first.session_key) and not first.exists(second.session_key)
    assert first.public_id is not None and SessionStore().public_id is None


def test_a_colliding_token_is_retried_and_endless_collisions_fail(monkeypatch: Any) -> None:
    taken = SessionStore()
    taken.create()
    fresh = "f" * 32
    keys = iter([taken.session_key, fresh])
    monkeypatch.setattr(SessionStore, "_get_new_session_key", lambda self: next(keys))
    store = SessionStore()
    store.create()
    assert store.session_key == fresh

    monkeypatch.setattr(SessionStore, "_get_new_session_key", lambda self: fresh)
    with pytest.raises(CreateError, match="3 attempts"):
        SessionStore().create()


def test_the_guard_needs_this_store() -> None:
    from django.contrib.sessions.backends.signed_cookies import SessionStore as CookieStore

    request = RequestFactory().get("/")
    request.session = CookieStore()
    with pytest.raises(TypeError, match="SESSION_ENGINE"):
        SessionGuardMiddleware(lambda r: None)(request)  # type: ignore[arg-type, return-value]


def test_own_session_is_only_the_current_requests_own(user_factory: Any) -> None:
    user, other = user_factory("clinician"), user_factory("clinician")
    assert own_session(user) is None  # no request
    anonymous = SessionStore()
    token = sessions.bind_current_session(anonymous)
    try:
        assert own_session(user) is None  # a session with no key yet
        anonymous["a"] = 1
        anonymous.save()
        assert own_session(user) is None  # nobody's
    finally:
        sessions.unbind_current_session(token)
    client = sign_in(user)
    store = SessionStore(cookie_of(client))
    token = sessions.bind_current_session(store)
    try:
        assert own_session(user) is store and own_session(other) is None
    finally:
        sessions.unbind_current_session(token)


# -- purge -------------------------------------------------------------------------------------
def test_expired_sessions_are_purged_by_the_task_and_clearsessions(user_factory: Any) -> None:
    users = [user_factory("clinician") for _ in range(3)]
    with time_machine.travel(START, tick=False) as clock:
        stale = [sign_in(u) for u in users[:2]]
        for _ in range(2):
            anonymous = SessionStore()
            anonymous["step"] = "x"
            anonymous.save()
        clock.shift(dt.timedelta(minutes=10))
        live = sign_in(users[2])
        clock.shift(dt.timedelta(minutes=6))
        assert sessions.purge_expired_sessions(batch=1) == 4
        assert purge_expired_sessions_task.delay().get() == 0
        clock.shift(dt.timedelta(minutes=10))
        call_command("clearsessions")

    assert not UserSession.objects.exists()
    events = _events("session.timeout")
    assert sorted(str(e.details["user"]) for e in events) == sorted(str(u.pk) for u in users)
    assert all(e.details["purged"] is True and e.details["limit"] == "idle" for e in events)
    assert all(e.actor_role == "system" for e in events)
    assert not any(is_signed_in(c) for c in [*stale, live])


def test_the_purge_is_scheduled_every_quarter_hour() -> None:
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(name="accounts: purge expired sessions")
    assert task.task == "accounts.purge_expired_sessions" and task.enabled
    assert (task.crontab.minute, task.crontab.hour) == ("*/15", "*")


def test_a_request_without_a_session_cookie_stores_nothing(user_factory: Any) -> None:
    client = browser_client()
    assert not is_signed_in(client)
    assert client.get("/accounts/login/", secure=True).status_code == 200
    assert not UserSession.objects.exists()


def test_anonymous_sessions_end_unaudited_and_an_ended_session_ends_once(user_factory: Any) -> None:
    with time_machine.travel(START, tick=False) as clock:
        anonymous = SessionStore()
        anonymous["step"] = "x"
        anonymous.save()
        clock.shift(dt.timedelta(minutes=15))
        assert SessionStore(anonymous.session_key).load() == {}
    client = sign_in(user_factory("clinician"))
    row = _row(client)

    assert sessions.end_session(row, reason="user") is True
    assert sessions.end_session(row, reason="user") is False
    assert not _events("session.timeout") and len(_events("session.end")) == 1

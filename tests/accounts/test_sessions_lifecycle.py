"""When sessions start, rotate and end: sign-in, the cap, sign-out and replay, password and MFA
changes, deactivation, privilege changes, break-glass. Through the real views, CSRF enforced."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Group

from neonpro.accounts import sessions
from neonpro.accounts.models import User
from neonpro.accounts.session_models import UserSession
from neonpro.accounts.sessions import SessionStore
from neonpro.accounts.signals import credentials_changed
from neonpro.audit.models import AuditEvent
from tests.accounts.session_helpers import (
    COOKIE,
    FIREFOX,
    PASSWORD,
    browser_client,
    cookie_of,
    form_token,
    is_signed_in,
    post_form,
    same_origin,
    sign_in,
    with_cookie,
)
from tests.accounts.signin_helpers import code, enrol, sign_in_password, submit_code
from tests.conftest import sign_in_as

pytestmark = pytest.mark.django_db
START = dt.datetime(2030, 3, 4, 8, 0, tzinfo=dt.UTC)


def _ended(reason: str) -> list[AuditEvent]:
    return [e for e in AuditEvent.objects.filter(action="session.end").order_by("id") if e.details["reason"] == reason]


def _live(user: User) -> set[Any]:
    return set(UserSession.objects.filter(user=user).values_list("pk", flat=True))


# -- sign-in -------------------------------------------------------------------------------------
def test_signing_in_gives_a_new_token_and_the_old_one_finds_nothing(user_factory: Any) -> None:
    user = user_factory("clinician")
    client = browser_client()
    with time_machine.travel(START - dt.timedelta(minutes=3), tick=False) as clock:
        before = SessionStore()  # a session from before signing in (a sign-in in steps keeps state here)
        before.bind_client("192.0.2.10", FIREFOX)
        before["step"] = "started"
        before.save()
        old = client.cookies[COOKIE] = before.session_key
        clock.move_to(START)
        sign_in(user, client)

    assert cookie_of(client) != old
    assert SessionStore(old).load() == {} and not is_signed_in(with_cookie(old))
    row = UserSession.objects.get(user=user)
    assert row.pk == before.public_id  # the same session, rotated in place
    assert row.created_at == START and row.expires_at == START + dt.timedelta(hours=12)  # lifetime from sign-in
    assert row.user_agent.startswith("Mozilla/5.0") and row.ip_address == "192.0.2.10"
    assert SessionStore(cookie_of(client))["step"] == "started"
    assert is_signed_in(client)


def test_the_token_between_password_and_code_dies_when_the_code_is_accepted(user_factory: Any) -> None:
    user = user_factory("clinician")
    device = enrol(user)
    client = browser_client()
    assert sign_in_password(client, user.username)["Location"].startswith("/accounts/login/verify/")
    pending = cookie_of(client)
    (row,) = UserSession.objects.all()
    assert row.user_id is None and not is_signed_in(with_cookie(pending))  # nobody yet

    assert submit_code(client, code(device))["Location"] == "/"

    assert cookie_of(client) != pending and is_signed_in(client)
    assert SessionStore(pending).load() == {} and not is_signed_in(with_cookie(pending))
    assert UserSession.objects.get(user=user).pk == row.pk  # the same session, rotated in place
    assert _live(user) == {row.pk}


def test_signing_in_as_someone_else_replaces_the_session(user_factory: Any) -> None:
    first, second = user_factory("clinician"), user_factory("clinician")
    client = sign_in(first, agent="")  # force_login's session knows no user agent
    old = cookie_of(client)

    # Django's login as another user in this session (force_login), then verified by their
    # authenticator as the code step leaves it (the sign-in form sends a signed-in user home instead).
    sign_in_as(client, second, reauthenticated=False)

    assert cookie_of(client) != old and not UserSession.objects.filter(user=first).exists()
    assert client.get("/api/v1/me/", secure=True).json()["id"] == str(second.pk)


def test_the_sign_in_form_refuses_a_post_without_its_csrf_token(user_factory: Any) -> None:
    user = user_factory("clinician")
    client = browser_client()
    client.get("/accounts/login/", secure=True)

    answer = client.post(
        "/accounts/login/",
        {"username": user.username, "password": PASSWORD},
        secure=True,
        headers=same_origin("/accounts/login/"),
    )

    assert answer.status_code == 403 and not UserSession.objects.exists()


def test_a_user_keeps_at_most_the_configured_number_of_sessions(user_factory: Any, settings: Any) -> None:
    settings.NEONPRO_SESSION_MAX_PER_USER = 2
    user, other = user_factory("clinician"), user_factory("clinician")
    with time_machine.travel(START, tick=False) as clock:
        oldest = sign_in(user)
        sign_in(other)
        clock.shift(dt.timedelta(minutes=1))
        middle = sign_in(user)
        clock.shift(dt.timedelta(minutes=1))
        newest = sign_in(user)

        assert not is_signed_in(oldest) and is_signed_in(middle) and is_signed_in(newest)
        assert len(_live(user)) == 2 and len(_live(other)) == 1
    (event,) = _ended("limit")
    assert event.details["user"] == str(user.pk) and event.actor_role == "system"


# -- sign-out and replay ---------------------------------------------------------------------------
def test_signing_out_deletes_the_session_and_a_replayed_cookie_is_not_authenticated(user_factory: Any) -> None:
    user = user_factory("clinician")
    client = sign_in(user)
    stolen = cookie_of(client)

    answer = post_form(client, "/accounts/logout/", page="/notifications/")

    assert answer.status_code == 302
    assert not UserSession.objects.filter(user=user).exists()
    replay = with_cookie(stolen)
    assert not is_signed_in(replay)
    assert replay.get("/", secure=True)["Location"].startswith("/accounts/login/")
    assert not UserSession.objects.exists()  # the replay made no session either


# -- credentials ----------------------------------------------------------------------------------
def test_changing_the_password_ends_the_other_sessions_and_keeps_this_one(user_factory: Any) -> None:
    user = user_factory("clinician")
    here, elsewhere = sign_in(user), sign_in(user, agent="Other browser/1.0")
    before = cookie_of(here)
    other_id = SessionStore(cookie_of(elsewhere)).public_id
    new = "a quite different passphrase 42"

    answer = post_form(
        here,
        "/accounts/password/change/",
        page="/accounts/password/change/",
        old_password=PASSWORD,
        new_password1=new,
        new_password2=new,
    )

    assert answer.status_code == 302
    assert is_signed_in(here) and cookie_of(here) != before  # kept, with a new token
    assert not is_signed_in(elsewhere)
    (event,) = _ended("password_change")
    assert event.resource_id == other_id and event.actor_id == user.pk


def test_a_password_set_elsewhere_ends_every_session(user_factory: Any) -> None:
    user = user_factory("clinician")
    clients = [sign_in(user), sign_in(user)]

    user.set_password("set by an operator in a shell")
    user.save()

    assert not any(is_signed_in(c) for c in clients)
    assert len(_ended("password_change")) == 2


def test_credentials_changed_ends_the_other_sessions(user_factory: Any) -> None:
    user, bystander = user_factory("clinician"), user_factory("clinician")
    kept, ended, theirs = sign_in(user), sign_in(user), sign_in(bystander)

    credentials_changed.send(sender=User, user=user, reason="mfa_change", keep_session_key=cookie_of(kept))

    assert is_signed_in(kept) and not is_signed_in(ended) and is_signed_in(theirs)
    assert len(_ended("mfa_change")) == 1
    credentials_changed.send(sender=User, user=user, reason="mfa_change", keep_session_key=None)
    assert not is_signed_in(kept)


def test_deactivating_an_account_ends_all_its_sessions(user_factory: Any) -> None:
    user = user_factory("clinician")
    clients = [sign_in(user), sign_in(user)]

    user.is_active = False
    user.save()

    assert not any(is_signed_in(c) for c in clients) and not _live(user)
    assert len(_ended("deactivated")) == 2
    user.is_active = True
    user.save()  # reactivating ends nothing (there is nothing left) and says nothing
    assert len(_ended("deactivated")) == 2


# -- privileges -------------------------------------------------------------------------------------
def test_a_role_or_flag_change_by_someone_else_ends_the_users_sessions(user_factory: Any) -> None:
    user = user_factory("clinician")
    with time_machine.travel(START, tick=False) as clock:  # three sign-ins: the third takes the next code
        for change in ({"role": "admin"}, {"is_staff": True}, {"is_superuser": True}):
            client = sign_in(user, clock=clock)
            for name, value in change.items():
                setattr(user, name, value)
            user.save()
            assert not is_signed_in(client), change
    assert len(_ended("privilege_change")) == 3


def test_group_and_permission_changes_end_the_members_sessions(user_factory: Any) -> None:
    from django.contrib.auth.models import Permission

    user = user_factory("clinician")
    group = Group.objects.create(name="Night shift")
    permission = Permission.objects.get(codename="view_notification")
    changes = [
        lambda: user.groups.add(group),
        lambda: group.user_set.remove(user),
        lambda: user.user_permissions.add(permission),
        lambda: user.user_permissions.clear(),
    ]
    with time_machine.travel(START, tick=False) as clock:  # four sign-ins: past two, the next codes
        for change in changes:
            client = sign_in(user, clock=clock)
            change()
            assert not is_signed_in(client)
    assert len(_ended("privilege_change")) == 4


def test_a_privilege_change_made_in_the_users_own_session_rotates_it(user_factory: Any) -> None:
    user = user_factory("clinician")
    mine, other = sign_in(user), sign_in(user)
    store = SessionStore(cookie_of(mine))
    row_id, old = store.public_id, store.session_key
    token = sessions.bind_current_session(store)  # as in a request of ``mine``
    try:
        user.role = User.Role.ADMIN
        user.save()
    finally:
        sessions.unbind_current_session(token)

    assert store.session_key != old and store.public_id == row_id
    assert not is_signed_in(other) and not is_signed_in(mine)  # ``mine`` would get the new cookie
    assert is_signed_in(with_cookie(store.session_key))


# -- break-glass --------------------------------------------------------------------------------------
def test_break_glass_gives_the_clinician_a_new_session_token(world: Any) -> None:
    client = sign_in(world.outsider)
    before = cookie_of(client)
    token = form_token(client, "/notifications/")

    answer = client.post(
        f"/api/v1/patients/{world.bob.pk}/emergency-access/",
        {"reason": "Unconscious in the emergency department, no care-team clinician reachable"},
        content_type="application/json",
        secure=True,
        headers={"X-CSRFToken": token, **same_origin("/")},
    )

    assert answer.status_code == 201, answer.content
    assert answer.cookies[COOKIE].value != before
    assert not is_signed_in(with_cookie(before)) and is_signed_in(client)


def test_rotating_a_request_without_a_session_does_nothing() -> None:
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.session = SessionStore()
    sessions.rotate_session(request)

    assert request.session.session_key is None and not UserSession.objects.exists()

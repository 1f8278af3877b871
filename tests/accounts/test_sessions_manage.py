"""People list and end their own sessions (page and API); administrators end a user's sessions.

Every state-changing request here is a browser's: CSRF enforced, refused without its token.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import pytest
import time_machine
from django.core.exceptions import PermissionDenied
from rest_framework.test import APIClient

from neonpro.accounts.models import User
from neonpro.accounts.services import ensure_administrators_group
from neonpro.accounts.session_models import UserSession
from neonpro.accounts.session_services import end_all_sessions
from neonpro.accounts.sessions import SessionStore
from neonpro.audit.models import AuditEvent
from tests.accounts.session_helpers import (
    COOKIE,
    browser_client,
    cookie_of,
    form_token,
    is_signed_in,
    post_form,
    same_origin,
    sign_in,
)

pytestmark = pytest.mark.django_db
PAGE = "/accounts/sessions/"
START = dt.datetime(2030, 3, 4, 8, 0, tzinfo=dt.UTC)  # the start of a 30-second code step


def _id(client: Any) -> uuid.UUID:
    session_id = SessionStore(cookie_of(client)).public_id
    assert session_id is not None
    return session_id


def _api(client: Any, method: str, url: str) -> Any:
    token = form_token(client, PAGE)
    return getattr(client, method)(url, secure=True, headers={"X-CSRFToken": token, **same_origin(PAGE)})


# -- the page --------------------------------------------------------------------------------
def test_the_page_lists_the_users_sessions_and_marks_this_one(user_factory: Any) -> None:
    user, other = user_factory("clinician"), user_factory("clinician")
    here, phone = sign_in(user), sign_in(user, agent="NeonPhone/2.1", ip="198.51.100.7")
    theirs = sign_in(other)

    page = here.get(PAGE, secure=True)
    html = page.content.decode()

    assert page.status_code == 200 and page["Cache-Control"] == "no-store"
    assert f'id="session-{_id(here)}"' in html and f'id="session-{_id(phone)}"' in html
    assert f'id="session-{_id(theirs)}"' not in html
    assert html.count("This session") == 1 and "NeonPhone/2.1" in html and "198.51.100.7" in html
    assert "15 minutes" in html and "12 hours" in html
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts == ['<script src="/static/neonpro/app.js" defer>']  # no inline script: strict CSP holds
    assert "style=" not in html and "<style" not in html
    assert "script-src 'self'" in page["Content-Security-Policy"]


def test_ending_another_session_from_the_page(user_factory: Any) -> None:
    user = user_factory("clinician")
    here, phone = sign_in(user), sign_in(user, agent="NeonPhone/2.1")

    answer = post_form(here, f"/accounts/sessions/{_id(phone)}/end/")

    assert answer.status_code == 302 and answer["Location"] == PAGE
    assert not is_signed_in(phone) and is_signed_in(here)
    assert "That session has ended" in here.get(PAGE, secure=True).content.decode()
    event = AuditEvent.objects.get(action="session.end")
    assert event.details == {"reason": "user", "user": str(user.pk)} and event.actor_id == user.pk


def test_ending_this_session_from_the_page_signs_out(user_factory: Any) -> None:
    client = sign_in(user_factory("clinician"))

    answer = post_form(client, f"/accounts/sessions/{_id(client)}/end/")

    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/")
    assert not is_signed_in(client) and not UserSession.objects.exists()


def test_ending_all_other_sessions_from_the_page(user_factory: Any) -> None:
    user = user_factory("clinician")
    with time_machine.travel(START, tick=False) as clock:  # three devices: the third takes the next code
        here, *others = [sign_in(user, clock=clock, agent=f"Browser/{n}") for n in range(3)]

        assert 'action="/accounts/sessions/end-others/"' in here.get(PAGE, secure=True).content.decode()
        answer = post_form(here, "/accounts/sessions/end-others/")

        assert answer.status_code == 302 and is_signed_in(here)
        assert not any(is_signed_in(c) for c in others)
        page = here.get(PAGE, secure=True).content.decode()
        assert "Ended 2 other sessions" in page and "end-others" not in page  # nothing else left to end
        post_form(here, "/accounts/sessions/end-others/")
        assert "Ended 0 other sessions" in here.get(PAGE, secure=True).content.decode()


def test_another_users_session_or_none_at_all_is_not_found(user_factory: Any) -> None:
    user, other = user_factory("clinician"), user_factory("clinician")
    here, theirs = sign_in(user), sign_in(other)

    for session_id in (_id(theirs), uuid.uuid4()):
        assert post_form(here, f"/accounts/sessions/{session_id}/end/").status_code == 404
    assert is_signed_in(theirs)


def test_the_forms_need_their_csrf_token_and_a_post(user_factory: Any) -> None:
    user = user_factory("clinician")
    here, phone = sign_in(user), sign_in(user, agent="NeonPhone/2.1")

    for url in (f"/accounts/sessions/{_id(phone)}/end/", "/accounts/sessions/end-others/"):
        assert here.post(url, {}, secure=True, headers=same_origin(PAGE)).status_code == 403
        assert here.get(url, secure=True).status_code == 405
    assert is_signed_in(phone)


def test_the_page_is_for_signed_in_people(user_factory: Any) -> None:
    answer = browser_client().get(PAGE, secure=True)

    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/")


# -- the API ---------------------------------------------------------------------------------
def test_the_api_lists_the_callers_sessions(user_factory: Any) -> None:
    user, other = user_factory("patient"), user_factory("patient")
    here, phone = sign_in(user), sign_in(user, agent="NeonPhone/2.1")
    sign_in(other)

    answer = here.get("/api/v1/sessions/", secure=True)

    assert answer.status_code == 200
    rows = {row["id"]: row for row in answer.json()}
    assert set(rows) == {str(_id(here)), str(_id(phone))}
    assert rows[str(_id(here))]["current"] is True and rows[str(_id(phone))]["current"] is False
    assert rows[str(_id(phone))]["user_agent"] == "NeonPhone/2.1"
    assert set(rows[str(_id(here))]) == {
        "id",
        "created_at",
        "last_seen_at",
        "expires_at",
        "idle_expires_at",
        "ip_address",
        "user_agent",
        "current",
    }
    assert cookie_of(here) not in answer.content.decode()


def test_the_api_ends_the_callers_own_sessions_only(user_factory: Any) -> None:
    user, other = user_factory("clinician"), user_factory("clinician")
    here, phone, theirs = sign_in(user), sign_in(user, agent="NeonPhone/2.1"), sign_in(other)

    assert _api(here, "delete", f"/api/v1/sessions/{_id(theirs)}/").status_code == 404
    assert _api(here, "delete", f"/api/v1/sessions/{uuid.uuid4()}/").status_code == 404
    assert is_signed_in(theirs)
    assert _api(here, "delete", f"/api/v1/sessions/{_id(phone)}/").status_code == 204
    assert not is_signed_in(phone) and is_signed_in(here)
    assert _api(here, "delete", f"/api/v1/sessions/{_id(here)}/").status_code == 204
    assert not is_signed_in(here)


def test_the_api_needs_csrf_and_a_browser_session(user_factory: Any) -> None:
    user = user_factory("clinician")
    here, phone = sign_in(user), sign_in(user, agent="NeonPhone/2.1")

    refused = here.delete(f"/api/v1/sessions/{_id(phone)}/", secure=True, headers=same_origin(PAGE))
    assert refused.status_code == 403 and is_signed_in(phone)

    token_client = APIClient()  # authenticated otherwise than by a session (as a token client is)
    token_client.force_authenticate(user)
    assert token_client.get("/api/v1/sessions/", secure=True).status_code == 403
    assert browser_client().get("/api/v1/sessions/", secure=True).status_code in (401, 403)


# -- administrators --------------------------------------------------------------------------
@pytest.fixture
def administrator(user_factory: Any) -> User:
    user = user_factory("admin", username="admin.sessions", is_staff=True)
    user.groups.add(ensure_administrators_group())
    return user


def _run_action(admin_client: Any, changelist: str, users: list[User]) -> str:
    page = admin_client.get(changelist, secure=True)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token, page.status_code
    answer = admin_client.post(
        changelist,
        {
            "action": "end_sessions_action",
            "_selected_action": [str(u.pk) for u in users],
            "csrfmiddlewaretoken": token.group(1),
        },
        secure=True,
        headers=same_origin(changelist),
        follow=True,
    )
    assert answer.status_code == 200
    return str(answer.content.decode())


def test_the_user_admin_offers_its_session_and_sign_in_actions(administrator: User) -> None:
    # Both the sessions and the sign-in work give UserAdmin an action: one list holds both.
    html = sign_in(administrator).get("/admin/accounts/user/", secure=True).content.decode()

    assert 'value="end_sessions_action"' in html and 'value="unlock_sign_in"' in html


def test_an_administrator_ends_all_sessions_of_accounts_from_the_admin(administrator: User, user_factory: Any) -> None:
    clinician, patient, bystander = user_factory("clinician"), user_factory("patient"), user_factory("clinician")
    targets = [sign_in(clinician), sign_in(clinician, agent="x/1"), sign_in(patient)]
    safe = sign_in(bystander)
    admin_client = sign_in(administrator)

    page = _run_action(admin_client, "/admin/accounts/user/", [clinician])
    page += _run_action(admin_client, "/admin/accounts/patientaccount/", [patient])

    assert "Ended 2 session(s)" in page and "Ended 1 session(s)" in page
    assert not any(is_signed_in(c) for c in targets) and is_signed_in(safe)
    events = AuditEvent.objects.filter(action="session.end")
    assert {e.details["reason"] for e in events} == {"admin"} and {e.actor_id for e in events} == {administrator.pk}


def test_an_administrator_cannot_end_a_superusers_sessions(administrator: User, user_factory: Any) -> None:
    boss = User.objects.create_superuser("boss", password="correct horse battery staple", role="admin")
    boss_client = sign_in(boss)
    admin_client = sign_in(administrator)

    page = _run_action(admin_client, "/admin/accounts/user/", [boss])

    assert "Skipped 1 account(s) you may not change" in page and is_signed_in(boss_client)
    assert end_all_sessions(boss, administrator) == 1  # a superuser may (and ends the administrator's)
    assert not is_signed_in(admin_client)


@pytest.mark.parametrize("who", ["no_permission", "inactive"])
def test_who_may_not_end_someone_elses_sessions(user_factory: Any, administrator: User, who: str) -> None:
    target = user_factory("clinician")
    actor = administrator if who == "inactive" else user_factory("clinician")
    if who == "inactive":
        actor.is_active = False
        actor.save()
    client = sign_in(target)

    with pytest.raises(PermissionDenied):
        end_all_sessions(actor, target)
    assert is_signed_in(client)


def test_the_cookie_is_never_in_a_page_or_the_sessions_str(user_factory: Any) -> None:
    client = sign_in(user_factory("clinician"))
    row = UserSession.objects.get()

    assert str(row) == f"Session {row.pk}"
    assert cookie_of(client) not in client.get(PAGE, secure=True).content.decode()
    assert client.cookies[COOKIE]["httponly"] and client.cookies[COOKIE]["secure"]

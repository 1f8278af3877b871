"""Notifications in the admin: an unread marker, the viewer's own notices, and "mark read"
for those addressed to the viewer only (the service of /notifications/)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone

from neonpro.accounts.models import Notification
from neonpro.accounts.services import ensure_administrators_group
from neonpro.security.context import system_context
from tests.conftest import sign_in_as

pytestmark = pytest.mark.django_db
LIST = "/admin/accounts/notification/"
ROW = re.compile(r"/admin/accounts/notification/([0-9a-f-]{36})/change/")


def _client(user: Any) -> Client:
    user.groups.add(ensure_administrators_group())
    client = Client()
    sign_in_as(client, user)
    return client


def _notices(world: Any) -> dict[str, Notification]:
    with system_context("test: notices"):
        return {
            "mine": Notification.objects.create(recipient=world.admin, kind="break_glass", details={"grant": "x"}),
            "mine_read": Notification.objects.create(
                recipient=world.admin, kind="audit_tampering", read_at=timezone.now()
            ),
            "theirs": Notification.objects.create(recipient=world.doctor, kind="break_glass"),
        }


def _rows(page: str) -> list[str]:
    return list(dict.fromkeys(ROW.findall(page)))


def test_unread_notices_are_marked_and_yours_are_a_filter(world: Any) -> None:
    notes = _notices(world)
    client = _client(world.admin)
    page = client.get(LIST, secure=True).content.decode()
    assert page.count('<td class="field-unread"><img src="/static/admin/img/icon-yes.svg" alt="True">') >= 2
    assert '<td class="field-unread"><img src="/static/admin/img/icon-no.svg" alt="False">' in page
    assert "A clinician used emergency access (break-glass) to a patient record." in page
    assert "You: unread" in page
    assert _rows(client.get(LIST, {"mine": "unread"}, secure=True).content.decode()) == [str(notes["mine"].pk)]
    yours = _rows(client.get(LIST, {"mine": "all"}, secure=True).content.decode())
    assert set(yours) == {str(notes["mine"].pk), str(notes["mine_read"].pk)}


def test_mark_read_changes_only_the_viewers_own_notices(world: Any) -> None:
    notes = _notices(world)
    client = _client(world.admin)
    only_mine = {"action": "mark_read", "_selected_action": [str(notes["mine"].pk)], "index": 0}
    with system_context("test: another unread notice"):
        extra = Notification.objects.create(recipient=world.admin, kind="break_glass")
    response = client.post(LIST, {**only_mine, "_selected_action": [str(extra.pk)]}, secure=True)
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["Marked 1 of your notices read."]
    response = client.post(
        LIST,
        {"action": "mark_read", "_selected_action": [str(n.pk) for n in notes.values()], "index": 0},
        secure=True,
    )
    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)][-2:] == [
        "Marked 1 of your notices read.",
        "2 selected notice(s) were not yours or already read: left as they were.",
    ]
    with system_context("test: check"):
        mine, theirs = (Notification.objects.get(pk=notes[k].pk) for k in ("mine", "theirs"))
    assert mine.read_at is not None and theirs.read_at is None
    again = client.post(LIST, only_mine, secure=True)
    assert [str(m) for m in get_messages(again.wsgi_request)][-2:] == [
        "Marked 0 of your notices read.",
        "1 selected notice(s) were not yours or already read: left as they were.",
    ]
    index = client.get("/admin/", secure=True).content.decode()
    assert '<span class="neonpro-unread" id="unread-notices">0 unread</span>' in index

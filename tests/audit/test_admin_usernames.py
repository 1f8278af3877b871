"""The audit log in the admin names actors by username (never a patient's), is searched by
username or by id along the keyset pages, and shows hashes as hex."""

from __future__ import annotations

import html
import re
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from neonpro.accounts.services import ensure_administrators_group
from neonpro.audit import actors
from neonpro.audit.models import AuditEvent
from neonpro.audit.services import SYSTEM_ACTOR_ID, record_event
from tests.conftest import sign_in_as

pytestmark = pytest.mark.django_db
LIST = "/admin/audit/auditevent/"
ROW = re.compile(r"/admin/audit/auditevent/(\d+)/change/")
NEXT = re.compile(r'<a href="([^"]+)" class="next-page end">Next page</a>')


def _client(user: Any) -> Client:
    user.groups.add(ensure_administrators_group())
    client = Client()
    sign_in_as(client, user)
    return client


def _by(user: Any, action: str = "test.admin_usernames") -> AuditEvent:
    return record_event(action, actor=SimpleNamespace(user_id=user.pk, role=user.role))


def _rows(page: str) -> list[int]:
    return [int(pk) for pk in dict.fromkeys(ROW.findall(page))]


def test_actors_are_usernames_and_patients_are_not_named(world: Any) -> None:
    _by(world.outsider)
    _by(world.alice_user)
    record_event("test.admin_usernames", actor=SimpleNamespace(user_id=SYSTEM_ACTOR_ID, role="system"))
    client = _client(world.admin)
    with CaptureQueriesContext(connections["default"]) as queries:
        page = client.get(LIST, secure=True).content.decode()
    assert '<td class="field-actor">dr.outside</td>' in page
    assert '<td class="field-actor">system</td>' in page
    assert '<td class="field-actor">a patient&#x27;s portal account</td>' in page
    assert f'field-actor">{world.outsider.pk}' not in page and "alice" not in page
    naming = 'SELECT "accounts_user"."id" AS "pk", "accounts_user"."username" AS "username", "accounts_user"."role'
    assert [q["sql"].startswith(naming) for q in queries.captured_queries].count(True) == 1, "one query a page"


def test_labels_of_ids_without_an_account() -> None:
    gone = uuid.uuid4()
    assert actors.actor_labels([None, gone]) == {None: actors.NOBODY, gone: str(gone)}


def test_search_by_username_keeps_the_keyset_pages(world: Any) -> None:
    mine = [_by(world.outsider).pk for _ in range(130)]  # more than a page (list_per_page 100)
    _by(world.doctor)
    client = _client(world.admin)
    pages, query = [], f"?q={world.outsider.username}"
    while query is not None:
        page = client.get(LIST + query, secure=True).content.decode()
        pages.append(_rows(page))
        found = NEXT.search(page)
        query = html.unescape(found.group(1)) if found else None
    assert len(pages) == 2
    assert [pk for page in pages for pk in page] == sorted(mine, reverse=True)


def test_search_finds_nothing_for_a_patient_or_an_unknown_name(world: Any) -> None:
    _by(world.alice_user)
    client = _client(world.admin)
    for term in (world.alice_user.username, "nobody.here"):
        assert _rows(client.get(LIST, {"q": term}, secure=True).content.decode()) == []


def test_search_by_id_matches_the_id_columns_exactly(world: Any) -> None:
    resource = uuid.uuid4()
    event = record_event("test.admin_usernames", resource_type="tests.thing", resource_id=resource)
    _by(world.doctor)
    client = _client(world.admin)
    assert _rows(client.get(LIST, {"q": f" {resource} "}, secure=True).content.decode()) == [event.pk]
    by_actor = _rows(client.get(LIST, {"q": str(world.doctor.pk)}, secure=True).content.decode())
    found = AuditEvent.objects.filter(pk__in=by_actor).values_list("actor_id", "resource_id")
    assert by_actor and all(world.doctor.pk in ids for ids in found)
    everything = _rows(client.get(LIST, {"q": "  "}, secure=True).content.decode())
    assert event.pk in everything


def test_an_event_shows_its_actor_and_hashes_in_hex(world: Any) -> None:
    event = _by(world.outsider)
    page = _client(world.admin).get(f"{LIST}{event.pk}/change/", secure=True).content.decode()
    assert bytes(event.hash).hex() in page and bytes(event.prev_hash).hex() in page
    assert "b&#x27;" not in page and "&lt;memory at" not in page
    assert '<div class="readonly">dr.outside</div>' in page

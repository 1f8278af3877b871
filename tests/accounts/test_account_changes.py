"""Account takeover by an administrator is no longer silent, nor possible by choosing a password.

The attack from the security review: an admin ("no PHI") set dr.grey's password in the user
admin, signed in as dr.grey and read records; the chain showed only dr.grey. Now admins
cannot choose passwords, a temporary password is forced to change, and every account change
is in the audit chain with its actor.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.test import Client

from neonpro.accounts.models import Notification, User
from neonpro.accounts.services import ensure_administrators_group
from neonpro.audit.models import AuditEvent
from neonpro.audit.services import bind_request, unbind_request
from tests.accounts.signin_helpers import sign_in
from tests.conftest import sign_in_as
from tests.errors import error_code, error_message

pytestmark = pytest.mark.django_db
STRONG = "correct horse battery staple"  # user_factory's password


@pytest.fixture
def admin_user(user_factory: Any) -> User:
    user = user_factory("admin", username="admin.ops", is_staff=True)
    user.groups.add(ensure_administrators_group())
    return user


@pytest.fixture
def clinician(user_factory: Any) -> User:
    return user_factory("clinician", username="dr.grey2")


def _client(user: User) -> Client:
    client = Client()
    sign_in_as(client, user)
    return client


def _mark() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _events(after: int, **filters: Any) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(id__gt=after, **filters).order_by("id"))


def _temporary_password(page: str) -> str:
    match = re.search(r'<code id="temporary-password">([^<]+)</code>', page)
    assert match, page
    return match.group(1)


def test_the_admin_cannot_choose_a_password_only_issue_a_temporary_one(admin_user: User, clinician: User) -> None:
    url = f"/admin/accounts/user/{clinician.pk}/password/"
    admin = _client(admin_user)

    form = admin.get(url, secure=True).content.decode()
    chosen = admin.post(url, {"password1": "chosen-by-the-admin-1", "password2": "chosen-by-the-admin-1"}, secure=True)

    assert "password1" not in form and "your_password" in form
    clinician.refresh_from_db()
    assert chosen.status_code == 200 and clinician.check_password(STRONG)  # nothing changed
    assert not clinician.check_password("chosen-by-the-admin-1")


def test_a_temporary_password_needs_the_admins_own_password_and_is_audited(admin_user: User, clinician: User) -> None:
    url = f"/admin/accounts/user/{clinician.pk}/password/"
    admin = _client(admin_user)
    start = _mark()

    wrong = admin.post(url, {"your_password": "not mine"}, secure=True).content.decode()
    clinician.refresh_from_db()
    assert "That is not your password" in wrong and clinician.check_password(STRONG)
    assert not _events(start, action="account.password_set")

    page = admin.post(url, {"your_password": STRONG}, secure=True).content.decode()
    temporary = _temporary_password(page)

    clinician.refresh_from_db()
    assert clinician.check_password(temporary) and clinician.must_change_password
    (event,) = _events(start, action="account.password_set")
    assert event.actor_id == admin_user.pk and event.actor_role == "admin"
    assert event.resource_id == clinician.pk and event.details == {"usable": True, "via": "temporary_password"}
    assert temporary not in str(AuditEvent.objects.filter(id__gt=start).values())
    notice = Notification.objects.get(recipient=clinician, kind="password_reset_by_admin")
    assert notice.details == {"by": str(admin_user.pk)}
    assert str(notice) == f"Notification {notice.pk} (password_reset_by_admin)"  # ids only, no PHI


def test_a_temporary_password_only_lets_its_owner_choose_a_new_one(admin_user: User, clinician: User) -> None:
    page = _client(admin_user).post(
        f"/admin/accounts/user/{clinician.pk}/password/", {"your_password": STRONG}, secure=True
    )
    temporary = _temporary_password(page.content.decode())
    user = Client()
    assert sign_in(user, clinician.username, temporary)
    start = _mark()

    home = user.get("/", secure=True)
    api = user.get("/api/v1/patients/", secure=True)
    changed = user.post(
        "/accounts/password/change/",
        {
            "old_password": temporary,
            "new_password1": "a new phrase of my own",
            "new_password2": "a new phrase of my own",
        },
        secure=True,
    )

    assert home.status_code == 302 and home["Location"] == "/accounts/password/change/"
    assert api.status_code == 403 and "temporary" in error_message(api)
    assert error_code(api) == "password_change_required"
    assert changed.status_code == 302 and changed["Location"] == "/accounts/password/change/done/"
    clinician.refresh_from_db()
    assert not clinician.must_change_password and clinician.check_password("a new phrase of my own")
    assert user.get("/notifications/", secure=True).status_code == 200  # pages open again
    (event,) = _events(start, action="account.password_set")
    assert event.actor_id == clinician.pk and event.details["via"] == "self_service"


@pytest.mark.parametrize(
    ("who", "message"),
    [("self", "Change your own password"), ("superuser", "Only a superuser"), ("nobody", "may not issue")],
)
def test_who_may_not_issue_a_temporary_password(admin_user: User, user_factory: Any, who: str, message: str) -> None:
    from django.core.exceptions import PermissionDenied

    from neonpro.accounts.services import issue_temporary_password

    actor = admin_user if who != "nobody" else user_factory("admin", username="helpdesk", is_staff=True)
    target = {"self": admin_user, "superuser": user_factory("admin", username="root2", is_superuser=True)}.get(
        who, user_factory("clinician")
    )

    with pytest.raises(PermissionDenied, match=message):
        issue_temporary_password(actor, target, actor_password=STRONG)


def test_creating_an_account_in_the_admin_sets_no_password_and_is_audited(admin_user: User) -> None:
    start = _mark()

    response = _client(admin_user).post(
        "/admin/accounts/user/add/",
        {"username": "dr.new", "role": "clinician", "first_name": "", "last_name": "", "email": ""},
        secure=True,
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    created = User.objects.get(username="dr.new")
    assert not created.has_usable_password()
    (event,) = _events(start, action="account.create")
    assert event.actor_id == admin_user.pk and event.resource_id == created.pk
    assert event.details == {"role": "clinician", "staff": False, "superuser": False}


def test_role_flag_group_and_profile_changes_are_audited_with_their_actor(admin_user: User, clinician: User) -> None:
    token = bind_request(
        actor_id=admin_user.pk, actor_role="admin", source_ip="10.0.0.7", user_agent="t", request_id=uuid.uuid4()
    )
    start = _mark()
    try:
        clinician.role = "admin"
        clinician.is_staff = True
        clinician.first_name = "Meredith"
        clinician.save()
        clinician.is_active = False
        clinician.save(update_fields=["is_active"])
        group = ensure_administrators_group()
        clinician.groups.add(group)
        clinician.groups.remove(group)
        clinician.groups.add(group)
        clinician.groups.clear()
    finally:
        unbind_request(token)

    events = _events(start)
    summary = [(e.action, e.details) for e in events]
    assert ("account.role_change", {"from": "clinician", "to": "admin"}) in summary
    assert ("account.privilege_change", {"staff": True, "superuser": False}) in summary
    assert ("account.update", {"fields": ["first_name"]}) in summary
    assert ("account.deactivate", {}) in summary
    changes = [e.details["change"] for e in events if e.action == "account.groups_change"]
    assert changes == ["add", "remove", "add", "clear"]
    assert all(e.actor_id == admin_user.pk and e.resource_id == clinician.pk for e in events)
    assert "Meredith" not in str([e.details for e in events])


def test_a_group_added_from_the_groups_side_is_audited_per_member(clinician: User, user_factory: Any) -> None:
    other = user_factory("clinician")
    group = ensure_administrators_group()
    start = _mark()

    group.user_set.add(clinician, other)

    events = _events(start, action="account.groups_change")
    assert sorted(str(e.resource_id) for e in events) == sorted([str(clinician.pk), str(other.pk)])
    assert all(e.details == {"change": "add", "groups": [group.pk]} for e in events)


def test_a_groups_permissions_are_audited(admin_user: User) -> None:
    from django.contrib.auth.models import Group, Permission

    group = Group.objects.create(name="Night shift")
    permission = Permission.objects.get(codename="view_user")
    start = _mark()

    group.permissions.add(permission)
    group.permissions.clear()

    actions = [(e.action, e.details["change"]) for e in _events(start)]
    assert actions == [("account.group_permissions_change", "add"), ("account.group_permissions_change", "clear")]


def test_signing_in_records_no_account_change(clinician: User) -> None:
    start = _mark()

    assert sign_in(Client(), clinician.username, STRONG)  # saves last_login

    assert not [e for e in _events(start) if e.action.startswith("account.")]


def test_the_admin_cannot_change_their_own_role_flags_or_groups(admin_user: User) -> None:
    page = _client(admin_user).get(f"/admin/accounts/user/{admin_user.pk}/change/", secure=True).content.decode()

    for field in ("role", "is_active", "is_staff", "is_superuser", "groups"):
        assert f'name="{field}"' not in page, field


def test_only_superusers_grant_superuser_or_single_permissions(admin_user: User, clinician: User) -> None:
    page = _client(admin_user).get(f"/admin/accounts/user/{clinician.pk}/change/", secure=True).content.decode()

    assert 'name="role"' in page and 'name="is_active"' in page
    assert 'name="is_superuser"' not in page and 'name="user_permissions"' not in page


def test_accounts_cannot_be_deleted_only_deactivated(admin_user: User, clinician: User) -> None:
    response = _client(admin_user).get(f"/admin/accounts/user/{clinician.pk}/delete/", secure=True)

    assert response.status_code == 403


def test_patient_accounts_are_not_listed_and_show_no_identity(admin_user: User, world: Any) -> None:
    admin = _client(admin_user)

    users = admin.get("/admin/accounts/user/", secure=True).content.decode()
    patients = admin.get("/admin/accounts/patientaccount/", secure=True).content.decode()
    detail = admin.get(f"/admin/accounts/patientaccount/{world.alice_user.pk}/change/", secure=True).content.decode()

    assert "alice" not in users and "bob" not in users and "dr.care" in users
    assert str(world.alice_user.pk) in patients
    assert "alice" not in patients and "alice" not in detail
    assert "Issue a temporary password" in detail


def test_the_admin_log_is_append_only(owner_cursor: Any, admin_user: User) -> None:
    from django.contrib.admin.models import CHANGE, LogEntry
    from django.contrib.contenttypes.models import ContentType
    from django.db import DatabaseError, connection, transaction

    LogEntry.objects.create(
        user=admin_user,
        content_type=ContentType.objects.get_for_model(User),
        object_id="x",
        object_repr="x",
        action_flag=CHANGE,
    )
    for statement in ("UPDATE django_admin_log SET object_repr = 'y'", "DELETE FROM django_admin_log"):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)


def test_the_application_cannot_delete_accounts_and_a_deletion_elsewhere_is_audited(user_factory: Any) -> None:
    from django.db import DatabaseError, transaction

    from neonpro.accounts import signals

    doomed = user_factory("clinician")
    with pytest.raises(DatabaseError, match="django_admin_log"), transaction.atomic():
        doomed.delete()  # the admin log is append-only, and deleting a user would delete its entries
    start = _mark()

    signals._audit_deleted_account(User, doomed)  # what a DBA's deletion (as the owner) records

    (event,) = _events(start, action="account.delete")
    assert event.resource_id == doomed.pk


def test_fixture_loading_is_not_reported_as_changes(clinician: User) -> None:
    from neonpro.accounts import signals

    signals._remember_account(User, clinician, raw=True)
    start = _mark()
    signals._audit_account(User, clinician, created=True, raw=True)

    assert not _events(start)


def test_changing_an_own_password_without_a_temporary_one(clinician: User) -> None:
    user = _client(clinician)

    user.post(
        "/accounts/password/change/",
        {"old_password": STRONG, "new_password1": "another long phrase", "new_password2": "another long phrase"},
        secure=True,
    )

    clinician.refresh_from_db()
    assert clinician.check_password("another long phrase") and not clinician.must_change_password


def test_the_temporary_password_page_of_no_account_or_without_rights(admin_user: User, user_factory: Any) -> None:
    missing = _client(admin_user).get(f"/admin/accounts/user/{uuid.uuid4()}/password/", secure=True)
    helpdesk = user_factory("admin", username="viewer", is_staff=True)
    from django.contrib.auth.models import Permission

    helpdesk.user_permissions.add(Permission.objects.get(codename="view_user"))
    target = user_factory("clinician")
    refused = _client(helpdesk).get(f"/admin/accounts/user/{target.pk}/password/", secure=True)

    assert missing.status_code == 404
    assert refused.status_code == 403


def test_a_superuser_may_grant_superuser(user_factory: Any, clinician: User) -> None:
    root = user_factory("admin", username="root", is_staff=True, is_superuser=True)

    page = _client(root).get(f"/admin/accounts/user/{clinician.pk}/change/", secure=True).content.decode()

    assert 'name="is_superuser"' in page


def test_the_new_account_form_saves_without_a_usable_password() -> None:
    from neonpro.accounts.admin import NewAccountForm
    from neonpro.accounts.models import PatientAccount

    form = NewAccountForm({"username": "dr.form", "role": "clinician"})
    assert form.is_valid(), form.errors
    user = form.save()

    assert user.pk and not user.has_usable_password()
    assert str(PatientAccount(pk=user.pk)) == f"Patient portal account {user.pk}"


# -- what the second review found ----------------------------------------------------------


def test_patient_accounts_cannot_be_found_by_name_through_admin_filters(admin_user: User, world: Any) -> None:
    admin = _client(admin_user)
    base = "/admin/accounts/patientaccount/"

    for probe in ("?username=alice", "?username__startswith=al", "?email__icontains=example", "?last_name=Canary"):
        page = admin.get(base + probe, secure=True)
        # A lookup the admin does not allow is a 400, never a filtered list.
        assert page.status_code == 400, probe
    assert admin.get(base + "?is_active__exact=1", secure=True).status_code == 200


def test_notifications_show_recipients_by_id_and_patient_accounts_never_by_name(admin_user: User, world: Any) -> None:
    from neonpro.accounts.services import notify_user

    notify_user(world.alice_user, kind="password_reset_by_admin", details={"by": admin_user.pk})

    page = _client(admin_user).get("/admin/accounts/notification/", secure=True).content.decode()
    filtered = _client(admin_user).get("/admin/accounts/notification/?recipient__username=alice", secure=True)

    assert "alice" not in page and str(world.alice_user.pk) in page
    assert filtered.status_code == 400
    assert str(world.alice_user) == f"Patient account {world.alice_user.pk}"


def test_administrators_cannot_hand_out_groups_or_staff_access(admin_user: User, clinician: User) -> None:
    page = _client(admin_user).get(f"/admin/accounts/user/{clinician.pk}/change/", secure=True).content.decode()

    assert 'name="groups"' not in page and 'name="is_staff"' not in page


def test_administrators_cannot_reset_admins_or_patients_or_touch_superusers(
    admin_user: User, user_factory: Any, world: Any
) -> None:
    from django.core.exceptions import PermissionDenied

    from neonpro.accounts.services import issue_temporary_password

    other_admin = user_factory("admin", username="admin.two", is_staff=True)
    for target, message in ((other_admin, "Only a superuser"), (world.alice_user, "reset by the patient")):
        with pytest.raises(PermissionDenied, match=message):
            issue_temporary_password(admin_user, target, actor_password=STRONG)
    root = user_factory("admin", username="root3", is_staff=True, is_superuser=True)
    page = _client(admin_user).get(f"/admin/accounts/user/{root.pk}/change/", secure=True).content.decode()
    assert 'name="is_active"' not in page and 'name="username"' not in page  # view only
    _client(admin_user).post(f"/admin/accounts/user/{root.pk}/change/", {"username": "renamed"}, secure=True)
    root.refresh_from_db()
    assert root.username == "root3"


def test_the_user_hears_of_a_reset_by_email_and_on_their_home_page(admin_user: User, clinician: User) -> None:
    from django.core import mail

    from neonpro.accounts.services import issue_temporary_password

    clinician.email = "grey@hospital.example"
    clinician.save(update_fields=["email"])
    temporary = issue_temporary_password(admin_user, clinician, actor_password=STRONG)

    (message,) = mail.outbox
    assert message.to == ["grey@hospital.example"] and "administrator" in message.body
    assert temporary not in message.body
    user = Client()
    assert sign_in(user, clinician.username, temporary)
    user.post(
        "/accounts/password/change/",
        {"old_password": temporary, "new_password1": "mine from now on", "new_password2": "mine from now on"},
        secure=True,
    )
    home = user.get("/", secure=True, follow=True)
    assert b'<span class="badge" aria-label="1 unread">1</span>' in home.content  # on every page
    notices = user.get("/notifications/", secure=True).content.decode()
    assert "An administrator issued a temporary password for your account." in notices


def test_the_temporary_password_cannot_be_kept(admin_user: User, clinician: User) -> None:
    from neonpro.accounts.services import issue_temporary_password

    temporary = issue_temporary_password(admin_user, clinician, actor_password=STRONG)
    user = Client()
    assert sign_in(user, clinician.username, temporary)

    page = user.post(
        "/accounts/password/change/",
        {"old_password": temporary, "new_password1": temporary, "new_password2": temporary},
        secure=True,
    )

    assert page.status_code == 200 and "not the temporary one" in page.content.decode()
    clinician.refresh_from_db()
    assert clinician.must_change_password


def test_the_confirmation_form_is_no_password_oracle(admin_user: User, clinician: User) -> None:
    from django.core.exceptions import PermissionDenied

    from neonpro.accounts.services import issue_temporary_password

    for _ in range(5):
        with pytest.raises(PermissionDenied, match="not your password"):
            issue_temporary_password(admin_user, clinician, actor_password="guess")

    with pytest.raises(PermissionDenied, match="Too many wrong passwords"):
        issue_temporary_password(admin_user, clinician, actor_password=STRONG)  # even the right one, for now


def test_the_database_records_account_writes_that_bypass_the_orm(clinician: User, admin_user: User) -> None:
    from django.db import DatabaseError, connection, transaction

    from neonpro.accounts.models import AccountChange

    start = AccountChange.objects.order_by("-id").values_list("id", flat=True).first() or 0
    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_user SET password = 'x', first_name = 'Raw' WHERE id = %s", [clinician.pk])
        cursor.execute("UPDATE accounts_user SET last_login = now() WHERE id = %s", [clinician.pk])
    User.objects.filter(pk=clinician.pk).update(is_active=False)
    clinician.groups.add(ensure_administrators_group())

    changes = list(AccountChange.objects.filter(id__gt=start).order_by("id"))
    assert [(c.table_name, c.operation, c.columns) for c in changes] == [
        ("accounts_user", "UPDATE", ["first_name", "password"]),
        ("accounts_user", "UPDATE", ["is_active"]),
        ("accounts_user_groups", "INSERT", ["group_id", "id", "user_id"]),
    ]
    assert all(c.row_id == str(clinician.pk) and c.database_role == "neonpro_app" for c in changes)
    assert "x" not in str([c.columns for c in changes])
    for statement in ("UPDATE accounts_accountchange SET columns = '[]'", "DELETE FROM accounts_accountchange"):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)


def test_an_account_change_names_the_signed_identity_that_made_it(clinician: User, admin_user: User) -> None:
    from django.db import connection

    from neonpro.accounts.models import AccountChange
    from neonpro.security.context import Identity, acting_as

    start = AccountChange.objects.order_by("-id").values_list("id", flat=True).first() or 0
    with acting_as(Identity(user_id=admin_user.pk, role="admin")), connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_user SET first_name = 'Signed' WHERE id = %s", [clinician.pk])
    with connection.cursor() as cursor:  # a forged plain setting names nobody
        cursor.execute("SELECT set_config('neonpro.user_id', %s, false)", [str(admin_user.pk)])
        cursor.execute("UPDATE accounts_user SET first_name = 'Forged' WHERE id = %s", [clinician.pk])
        cursor.execute("RESET neonpro.user_id")

    changes = list(AccountChange.objects.filter(id__gt=start).order_by("id"))
    assert [(c.columns, c.acting_as) for c in changes] == [(["first_name"], str(admin_user.pk)), (["first_name"], "")]


def test_an_account_change_names_only_its_table_and_operation() -> None:
    from neonpro.accounts.models import AccountChange

    change = AccountChange(pk=7, table_name="accounts_user", operation="UPDATE")

    assert str(change) == "Account change 7 (accounts_user UPDATE)"

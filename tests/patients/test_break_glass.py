"""Break-glass has a ceiling: rate limits, no stacking, an alert, and a privacy officer's review.

The attack from the security review: any clinician opened 24-hour grants on any patient whose
UUID they knew — 21 in 0.9 s, stacked and renewed without limit.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client

from neonpro.accounts.models import Notification
from neonpro.accounts.services import ensure_privacy_officers_group
from neonpro.audit.models import AuditEvent
from patients import break_glass
from patients.models import EmergencyAccessGrant
from tests.conftest import sign_in_as
from tests.errors import error_code, error_message

pytestmark = pytest.mark.django_db
REASON = "Unconscious in the emergency department, no care-team clinician reachable"


def _ask(api: Any, who: Any, patient_id: Any, **extra: Any) -> Any:
    return api(who).post(f"/api/v1/patients/{patient_id}/emergency-access/", {"reason": REASON, **extra})


def _backdate(clinician: Any, **delta: float) -> None:
    """Move a clinician's grants into the past (the database's clock, which RLS checks, cannot travel)."""
    from neonpro.security.context import system_context

    with system_context("test: backdate grants"):
        for grant in EmergencyAccessGrant._base_manager.filter(clinician=clinician):
            grant.granted_at -= dt.timedelta(**delta)
            grant.expires_at -= dt.timedelta(**delta)
            grant.save(update_fields=["granted_at", "expires_at"])


def _grants(clinician: Any) -> int:
    from neonpro.security.context import system_context

    with system_context("test: count grants"):
        return int(EmergencyAccessGrant._base_manager.filter(clinician=clinician).count())


def test_twenty_one_grants_in_a_row_stop_at_the_hourly_ceiling(api: Any, world: Any, patient_factory: Any) -> None:
    patients = [patient_factory() for _ in range(21)]

    answers = [_ask(api, world.outsider, p.pk, minutes=24 * 60) for p in patients]

    assert [a.status_code for a in answers[:3]] == [201, 201, 201]
    assert {a.status_code for a in answers[3:]} == {429}
    assert 3000 < int(answers[3]["Retry-After"]) <= 3601
    assert "3 an hour" in error_message(answers[3])
    assert _grants(world.outsider) == 3
    refused = AuditEvent.objects.filter(action="break_glass.start", outcome="denied", actor_id=world.outsider.pk)
    assert refused.count() == 18 and all(e.details == {"refused": "rate_limit"} for e in refused)
    alerts = Notification.objects.filter(kind="break_glass_many", recipient=world.admin)
    assert [a.details for a in alerts] == [{"clinician": str(world.outsider.pk), "count": 3}]


def test_probing_unknown_ids_counts_against_the_ceiling(api: Any, world: Any) -> None:
    probes = [_ask(api, world.outsider, uuid.uuid4()).status_code for _ in range(3)]

    assert probes == [404, 404, 404]
    assert _ask(api, world.outsider, world.bob.pk).status_code == 429


def test_grants_do_not_stack_on_one_patient(api: Any, world: Any) -> None:
    first = _ask(api, world.outsider, world.bob.pk, minutes=30)
    again = _ask(api, world.outsider, world.bob.pk, minutes=30)

    assert first.status_code == 201
    assert again.status_code == 409 and "does not stack" in error_message(again)
    assert error_code(again) == "already_granted" and first.json()["expires_at"] in error_message(again)
    denied = AuditEvent.objects.get(action="break_glass.start", outcome="denied", actor_id=world.outsider.pk)
    assert denied.details == {"refused": "already_active"} and str(denied.resource_id) == first.json()["grant"]


def test_after_the_grant_expires_it_may_be_requested_again(api: Any, world: Any) -> None:
    assert _ask(api, world.outsider, world.bob.pk, minutes=5).status_code == 201
    _backdate(world.outsider, minutes=6)

    again = _ask(api, world.outsider, world.bob.pk, minutes=5)

    assert again.status_code == 201


def test_the_daily_ceiling_holds_across_hours(api: Any, world: Any, patient_factory: Any, settings: Any) -> None:
    settings.NEONPRO_BREAK_GLASS_PER_HOUR, settings.NEONPRO_BREAK_GLASS_PER_DAY = 10, 4
    for _ in range(4):
        assert _ask(api, world.outsider, patient_factory().pk, minutes=10).status_code == 201
    _backdate(world.outsider, hours=5)

    refused = _ask(api, world.outsider, patient_factory().pk)

    assert refused.status_code == 429 and "4 a day" in error_message(refused)
    assert error_code(refused) == "break_glass_limit"
    assert 19 * 3600 - 60 < int(refused["Retry-After"]) <= 19 * 3600 + 1
    _backdate(world.outsider, hours=19, minutes=1)
    assert _ask(api, world.outsider, patient_factory().pk, minutes=10).status_code == 201


# -- the review queue --------------------------------------------------------------------------


@pytest.fixture
def privacy_officer(user_factory: Any) -> Any:
    officer = user_factory("admin", username="privacy", is_staff=True)
    officer.groups.add(ensure_privacy_officers_group())
    return officer


@pytest.fixture
def grant(api: Any, world: Any) -> EmergencyAccessGrant:
    from neonpro.security.context import system_context

    answer = _ask(api, world.outsider, world.bob.pk, minutes=15)
    _backdate(world.outsider, minutes=16)  # expired: ready for review
    with system_context("test: load the grant"):
        return EmergencyAccessGrant._base_manager.get(pk=answer.json()["grant"])


def _reload(grant: EmergencyAccessGrant) -> EmergencyAccessGrant:
    from neonpro.security.context import system_context

    with system_context("test: reload the grant"):
        return EmergencyAccessGrant._base_manager.get(pk=grant.pk)


def _admin(user: Any) -> Client:
    client = Client()
    sign_in_as(client, user)
    return client


def test_privacy_officers_review_from_the_queue_and_the_review_is_audited(
    privacy_officer: Any, grant: EmergencyAccessGrant
) -> None:
    queue = _admin(privacy_officer).get("/admin/patients/emergencyaccessgrant/?review=awaiting", secure=True)
    assert str(grant.patient_id) in queue.content.decode()

    _admin(privacy_officer).post(
        "/admin/patients/emergencyaccessgrant/",
        {"action": "mark_inappropriate", "_selected_action": [str(grant.pk)]},
        secure=True,
    )

    grant = _reload(grant)
    assert (grant.review_outcome, grant.reviewed_by_id) == ("inappropriate", privacy_officer.pk)
    event = AuditEvent.objects.get(action="break_glass.review", resource_id=grant.pk)
    assert event.actor_id == privacy_officer.pk and event.details == {"outcome": "inappropriate"}
    awaiting = _admin(privacy_officer).get("/admin/patients/emergencyaccessgrant/?review=awaiting", secure=True)
    reviewed = _admin(privacy_officer).get("/admin/patients/emergencyaccessgrant/?review=reviewed", secure=True)
    assert str(grant.patient_id) not in awaiting.content.decode()
    assert str(grant.patient_id) in reviewed.content.decode()


def test_only_reviewers_read_the_reason_and_each_reading_is_audited(
    privacy_officer: Any, world: Any, grant: EmergencyAccessGrant
) -> None:
    url = f"/admin/patients/emergencyaccessgrant/{grant.pk}/change/"

    as_officer = _admin(privacy_officer).get(url, secure=True).content.decode()
    as_admin = _admin(world.admin).get(url, secure=True)

    assert REASON in as_officer
    assert AuditEvent.objects.filter(action="break_glass.reason_read", resource_id=grant.pk).count() == 1
    assert REASON not in as_admin.content.decode()


def test_a_plain_administrator_cannot_review(world: Any, grant: EmergencyAccessGrant) -> None:
    _admin(world.admin).post(
        "/admin/patients/emergencyaccessgrant/",
        {"action": "mark_appropriate", "_selected_action": [str(grant.pk)]},
        secure=True,
    )

    grant = _reload(grant)
    assert grant.reviewed_at is None
    with pytest.raises(PermissionDenied):
        break_glass.review_emergency_access(world.admin, grant.pk, outcome="appropriate")
    with pytest.raises(PermissionDenied):
        break_glass.emergency_reason_for_review(world.admin, grant)


def test_a_review_is_given_once_with_a_known_outcome_and_never_on_ones_own_use(
    privacy_officer: Any, grant: EmergencyAccessGrant, world: Any
) -> None:
    with pytest.raises(ValidationError):
        break_glass.review_emergency_access(privacy_officer, grant.pk, outcome="fine")
    break_glass.review_emergency_access(privacy_officer, grant.pk, outcome="follow_up")
    with pytest.raises(ValidationError, match="reviewed already"):
        break_glass.review_emergency_access(privacy_officer, grant.pk, outcome="appropriate")
    world.outsider.groups.add(ensure_privacy_officers_group())
    from neonpro.accounts.models import User

    outsider = User.objects.get(pk=world.outsider.pk)  # a fresh permission cache
    with pytest.raises(PermissionDenied, match="their own"):
        break_glass.review_emergency_access(outsider, grant.pk, outcome="appropriate")


def test_an_action_that_fails_says_why_in_the_admin(privacy_officer: Any, grant: EmergencyAccessGrant) -> None:
    _admin(privacy_officer).post(
        "/admin/patients/emergencyaccessgrant/",
        {"action": "mark_appropriate", "_selected_action": [str(grant.pk)]},
        secure=True,
    )
    assert _reload(grant).review_outcome == "appropriate"

    page = _admin(privacy_officer).post(
        "/admin/patients/emergencyaccessgrant/",
        {"action": "mark_follow_up", "_selected_action": [str(grant.pk)]},
        secure=True,
        follow=True,
    )

    assert "reviewed already" in page.content.decode()


def test_the_clinician_ends_their_emergency_access_early_and_only_they_can(api: Any, world: Any) -> None:
    granted = _ask(api, world.outsider, world.bob.pk, minutes=30).json()
    url = f"/api/v1/emergency-access/{granted['grant']}/end/"

    other = api(world.doctor).post(url, {})
    ended = api(world.outsider).post(url, {})

    assert other.status_code == 404  # another clinician cannot even see the grant
    assert ended.status_code == 200 and ended.json()["ended_at"]
    event = AuditEvent.objects.get(action="break_glass.stop", outcome="success")
    assert event.details == {"dicom_event": 110138} and event.actor_id == world.outsider.pk
    assert api(world.outsider).get(f"/api/v1/patients/{world.bob.pk}/").status_code == 404  # read access is gone


@pytest.mark.parametrize(
    ("who", "kwargs", "error"),
    [
        ("admin", {}, PermissionDenied),
        ("outsider", {"reason": "too short"}, ValidationError),
        ("outsider", {"minutes": 0}, ValidationError),
        ("outsider", {"minutes": 24 * 60 + 1}, ValidationError),
    ],
)
def test_the_service_refuses_what_the_api_validates_too(
    world: Any, who: str, kwargs: dict[str, Any], error: type
) -> None:
    from neonpro.security.context import identity_for_user

    identity = identity_for_user(getattr(world, who))
    with pytest.raises(error):
        break_glass.request_emergency_access(identity, patient_id=world.bob.pk, **{"reason": REASON, **kwargs})


def test_a_malformed_patient_id_is_an_unknown_patient(world: Any) -> None:
    from neonpro.security.context import identity_for_user
    from patients.models import Patient

    with pytest.raises(Patient.DoesNotExist):
        break_glass.request_emergency_access(identity_for_user(world.outsider), patient_id="not-a-uuid", reason=REASON)


def test_the_system_ends_any_grant(world: Any, grant: EmergencyAccessGrant) -> None:
    from neonpro.security.context import SYSTEM, system_context

    with system_context("test: end as the system"):
        ended = break_glass.end_emergency_access(SYSTEM, grant.pk)

    assert ended.ended_at is not None


def test_a_reviewer_opening_a_grant_that_does_not_exist_gets_404(privacy_officer: Any) -> None:
    page = _admin(privacy_officer).get(f"/admin/patients/emergencyaccessgrant/{uuid.uuid4()}/change/", secure=True)

    assert page.status_code == 302  # the admin's "does not exist" redirect to the list


def test_only_the_clinician_who_opened_it_may_end_it(world: Any, grant: EmergencyAccessGrant) -> None:
    from neonpro.security.context import acting_as, identity_for_user

    admin = identity_for_user(world.admin)  # administrators see grants, but they are not theirs to end
    with acting_as(admin), pytest.raises(PermissionDenied, match="Only the clinician who opened"):
        break_glass.end_emergency_access(admin, grant.pk)


def test_a_deactivated_privacy_officer_reviews_nothing(privacy_officer: Any, grant: EmergencyAccessGrant) -> None:
    privacy_officer.is_active = False

    assert not break_glass.may_review(privacy_officer)
    with pytest.raises(PermissionDenied):
        break_glass.review_emergency_access(privacy_officer, grant.pk, outcome="appropriate")


def test_a_use_is_reviewed_only_once_it_has_ended(privacy_officer: Any, api: Any, world: Any) -> None:
    answer = _ask(api, world.outsider, world.bob.pk)
    grant_id = answer.json()["grant"]

    with pytest.raises(ValidationError, match="once it has ended"):
        break_glass.review_emergency_access(privacy_officer, grant_id, outcome="appropriate")


def test_the_alert_counts_grants_not_probes_and_comes_once_a_day(
    api: Any, world: Any, patient_factory: Any, settings: Any
) -> None:
    settings.NEONPRO_BREAK_GLASS_PER_HOUR, settings.NEONPRO_BREAK_GLASS_PER_DAY = 20, 20
    for _ in range(3):  # probes first: they must not push the count past the threshold unseen
        assert _ask(api, world.outsider, uuid.uuid4()).status_code == 404
    for _ in range(5):
        assert _ask(api, world.outsider, patient_factory().pk, minutes=10).status_code == 201

    alerts = Notification.objects.filter(kind="break_glass_many", recipient=world.admin)
    assert [a.details for a in alerts] == [{"clinician": str(world.outsider.pk), "count": 3}]


def test_two_concurrent_requests_cannot_both_pass_or_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from neonpro.accounts.models import User
    from neonpro.security.context import acting_as, identity_for_user, system_context
    from patients.models import Patient
    from tests.conftest import in_thread

    def seed() -> tuple[Any, Any]:
        clinician = User.objects.create_user(username=f"dr.race.{uuid.uuid4().hex[:6]}", role="clinician")
        with system_context("test: seed a patient"):
            patient = Patient.objects.create(full_name="Race Canary", date_of_birth=dt.date(1990, 1, 1), mrn="RACE-1")
        return clinician, patient.pk

    # Committed rows (and their append-only audit events) outlive this test: other tests scope
    # what they count to their own personas.
    clinician, patient_id = in_thread(seed)
    from keys.keyring import keyring

    # Reserve encryptions now (committed): in the suite reservations share the request's
    # connection, and a reservation's row lock would serialise the two requests by itself.
    in_thread(lambda: keyring.active("field"))
    barrier = threading.Barrier(2)
    counted = break_glass._recent_break_glass

    def count_then_wait(*args: Any) -> Any:
        found = counted(*args)
        try:  # both requests counted before either inserts — unless the lock made one wait
            barrier.wait(timeout=2)
        except threading.BrokenBarrierError:
            pass
        return found

    monkeypatch.setattr(break_glass, "_recent_break_glass", count_then_wait)
    outcomes: list[str] = []

    def request() -> None:
        from django.db import connections

        try:
            identity = identity_for_user(clinician)
            with acting_as(identity):
                break_glass.request_emergency_access(identity, patient_id=patient_id, reason=REASON)
            outcomes.append("granted")
        except break_glass.EmergencyAccessLimitError:
            outcomes.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(outcomes) == ["granted", "refused"]


def test_without_postgresql_there_is_no_advisory_lock_to_take(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    monkeypatch.setattr(connection, "vendor", "sqlite")  # the embedded mode serialises writes itself
    with CaptureQueriesContext(connection) as queries:
        break_glass._serialise_per_clinician(uuid.uuid4())

    assert not queries.captured_queries

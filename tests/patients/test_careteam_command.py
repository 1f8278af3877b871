"""``manage.py careteam``: audited care-team changes for administrators."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from neonpro.audit.models import AuditEvent
from neonpro.security.context import system_context
from patients.models import CareTeamMembership

pytestmark = pytest.mark.django_db


def test_add_and_end_a_membership(world) -> None:  # type: ignore[no-untyped-def]
    out = StringIO()
    call_command("careteam", "add", "--patient", str(world.bob.pk), "--clinician", world.outsider.username, stdout=out)
    with system_context("check"):
        membership = CareTeamMembership._plain.get(patient=world.bob, clinician=world.outsider)
    assert str(membership.pk) in out.getvalue()
    call_command("careteam", "end", str(membership.pk), "--on", "2099-01-01", stdout=StringIO())
    with system_context("check"):
        membership.refresh_from_db()
    assert str(membership.ends_on) == "2099-01-01"
    assert list(AuditEvent.objects.filter(action__startswith="careteam.").values_list("action", flat=True)) == [
        "careteam.add",
        "careteam.end",
    ]


def test_clear_errors(world) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError, match="Care teams are made of clinicians"):
        call_command("careteam", "add", "--patient", str(world.bob.pk), "--clinician", world.alice_user.username)
    with pytest.raises(CommandError):
        call_command("careteam", "add", "--patient", str(world.bob.pk), "--clinician", "nobody-here")


def test_ending_a_membership_that_has_ended_is_refused_not_reopened(
    care_team: Any, patient_factory: Any, user_factory: Any
) -> None:
    import datetime as dt

    from django.core.exceptions import ValidationError

    from neonpro.security.context import system_context
    from patients.services import end_care_team_membership

    membership = care_team(
        patient_factory(), user_factory("clinician"), starts_on=dt.date(2020, 1, 1), ends_on=dt.date(2020, 6, 1)
    )
    with system_context("test") as identity, pytest.raises(ValidationError) as refused:
        end_care_team_membership(identity, membership.pk, on=dt.date(2021, 1, 1))
    assert refused.value.message_dict == {"ends_on": ["This membership ended on 2020-06-01 already."]}
    with system_context("test"):
        membership.refresh_from_db()
    assert membership.ends_on == dt.date(2020, 6, 1)

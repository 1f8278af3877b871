"""``manage.py careteam add|end``: care-team changes, audited (administrators' tool)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from neonpro.audit.operator import add_operator_arguments, operator_from_options
from neonpro.security.context import system_context
from patients import services


class Command(BaseCommand):
    help = "Add a clinician to a patient's care team, or end a membership."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add")
        add.add_argument("--patient", required=True, help="Patient UUID")
        add.add_argument("--clinician", required=True, help="Clinician username")
        add.add_argument("--starts-on", type=dt.date.fromisoformat, default=None)
        add.add_argument("--ends-on", type=dt.date.fromisoformat, default=None)
        end = sub.add_parser("end")
        end.add_argument("membership", help="Membership UUID")
        end.add_argument("--on", type=dt.date.fromisoformat, default=None)
        add_operator_arguments(parser)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            with operator_from_options(options), system_context(f"careteam {action} (command line)") as identity:
                if action == "add":
                    clinician = get_user_model().objects.get(username=options["clinician"])
                    membership = services.add_to_care_team(
                        identity,
                        patient_id=options["patient"],
                        clinician=clinician,
                        starts_on=options["starts_on"],
                        ends_on=options["ends_on"],
                    )
                    self.stdout.write(f"Care-team membership {membership.pk} created.")
                else:
                    membership = services.end_care_team_membership(identity, options["membership"], on=options["on"])
                    self.stdout.write(f"Care-team membership {membership.pk} ends on {membership.ends_on}.")
        except ObjectDoesNotExist as exc:
            raise CommandError(str(exc) or "not found") from None
        except (ValidationError, PermissionDenied) as exc:
            raise CommandError("; ".join(getattr(exc, "messages", [str(exc)]))) from None

"""``manage.py signin unlock --username NAME | --ip ADDRESS``: lift a sign-in lock-out.

Axes stores usernames only as keyed hashes, so its own ``axes_reset_username`` cannot find a
typed name: this command hashes it the same way (neonpro.accounts.lockout). Recorded in the
audit log under ``--operator/--reason/--ticket`` (``signin.unlocked``).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from neonpro.accounts.lockout import unlock
from neonpro.audit.operator import add_operator_arguments, operator_from_options


class Command(BaseCommand):
    help = "Sign-in administration: `unlock` forgets the failed attempts of an account or an address."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["unlock"])
        parser.add_argument("--username", help="the account to unlock (as typed at sign-in)")
        parser.add_argument("--ip", dest="ip_address", help="the client address to unlock")
        add_operator_arguments(parser)

    def handle(self, *args: Any, action: str, username: str | None, ip_address: str | None, **options: Any) -> None:
        if not username and not ip_address:
            raise CommandError("name what to unlock: --username NAME and/or --ip ADDRESS")
        with operator_from_options(options):
            removed = unlock(username=username, ip_address=ip_address)
        self.stdout.write(f"Unlocked: {removed} failed-attempt record(s) removed.")

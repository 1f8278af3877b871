"""``manage.py demo seed|reset-passwords``: the demo data of the embedded mode (`make run`)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from patients.demo import DEMO_PATIENTS, Credential, reset_demo_passwords, seed_demo


def credentials_table(credentials: list[Credential]) -> list[str]:
    return [f"  {c.username:<12} {c.role:<10} {c.password}" for c in credentials]


class Command(BaseCommand):
    help = "Create demo users, patients, care teams and records (once), or give the demo accounts new passwords."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["seed", "reset-passwords"])

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "seed":
            credentials = seed_demo()
            if not credentials:
                self.stdout.write(
                    "Demo data already present (passwords were shown when it was created; "
                    "new ones: `python manage.py demo reset-passwords`)."
                )
                return
            self.stdout.write(
                f"Created {len(DEMO_PATIENTS)} demo patients and these accounts (passwords shown only now):"
            )
        else:
            credentials = reset_demo_passwords()
            if not credentials:
                raise CommandError("no demo accounts here: create them with `python manage.py demo seed`")
            self.stdout.write("New passwords for the demo accounts (shown only now; the old ones no longer work):")
        for line in credentials_table(credentials):
            self.stdout.write(line)

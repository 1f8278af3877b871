"""``manage.py keys status|verify|init|create-master``: thin calls into keys.services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from keys import services
from keys.exceptions import KeysError


class Command(BaseCommand):
    help = "Inspect and manage encryption keys."
    requires_system_checks: list[str] = []  # must run when the master key is broken

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("status", help="Table of data keys: purpose, status, age.")
        sub.add_parser("verify", help="Unwrap every data key and round-trip a value per purpose.")
        sub.add_parser("init", help="Create an active data key for every purpose that has none.")
        create = sub.add_parser("create-master", help="Write a new local master key file (0600).")
        create.add_argument("--path", type=Path, default=None, help="Where to write it (default: the configured file).")
        create.add_argument("--if-missing", action="store_true", help="Do nothing when the file already exists.")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            getattr(self, "handle_" + action.replace("-", "_"))(**options)
        except KeysError as exc:
            raise CommandError(str(exc)) from None

    def handle_status(self, **options: Any) -> None:
        rows = services.key_inventory()
        if not rows:
            self.stdout.write("No data keys yet (they are created on first use or by `keys init`).")
            return
        header = f"{'ID':>5}  {'PURPOSE':<8} {'STATUS':<13} {'ALGORITHM':<12} {'AGE':>5}  WRAPPED BY"
        self.stdout.write(header)
        for r in rows:
            self.stdout.write(
                f"{r.id:>5}  {r.purpose:<8} {r.status:<13} {r.algorithm:<12} {r.age_days:>4}d  {r.wrapping_key_id}"
            )

    def handle_verify(self, **options: Any) -> None:
        report = services.verify_keys()
        for line in report.checked:
            self.stdout.write(f"ok    {line}")
        for line in report.failures:
            self.stderr.write(f"FAIL  {line}")
        if not report.ok:
            raise CommandError(f"{len(report.failures)} key check(s) failed")
        self.stdout.write(self.style.SUCCESS(f"All {len(report.checked)} key checks passed."))

    def handle_init(self, **options: Any) -> None:
        created = services.init_keys()
        names = ", ".join(f"{k.purpose} (id {k.pk})" for k in created) or "none needed"
        self.stdout.write(f"Data keys created: {names}.")

    def handle_create_master(self, *, path: Path | None, if_missing: bool, **options: Any) -> None:
        from keys.conf import keys_settings

        target = path or keys_settings.MASTER_KEY_FILE
        if if_missing and target.exists():
            self.stdout.write(f"Master key file {target} already exists.")
            return
        written = services.create_master_key_file(target)
        self.stdout.write(
            f"Wrote a new master key to {written} (mode 0600). Back it up: without it no data is readable."
        )

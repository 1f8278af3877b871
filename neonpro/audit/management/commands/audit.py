"""``manage.py audit verify|export``: thin calls into neonpro.audit.services."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from neonpro.audit.services import export_events, verify_chain


def _moment(value: str) -> dt.datetime:
    try:
        parsed = parse_datetime(value) or (
            dt.datetime.combine(dt.date.fromisoformat(value), dt.time()) if len(value) == 10 else None
        )
    except ValueError:
        parsed = None
    if parsed is None:
        raise CommandError(f"{value!r} is not an ISO 8601 date or datetime")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class Command(BaseCommand):
    help = "Verify the audit hash chain, or export events as JSON lines."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("verify", help="Check that no event was edited, deleted or reordered.")
        export = sub.add_parser("export", help="Write events as JSON lines (for a SIEM).")
        export.add_argument("--since", type=str, default=None, help="ISO date/datetime (UTC if no offset).")
        export.add_argument("--until", type=str, default=None)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "verify":
            report = verify_chain()
            if not report.ok:
                raise CommandError("audit chain broken: " + "; ".join(report.problems))
            self.stdout.write(f"Audit chain intact: {report.checked} events verified.")
            return
        since = _moment(options["since"]) if options["since"] else None
        until = _moment(options["until"]) if options["until"] else None
        count = 0
        for event in export_events(since=since, until=until):
            self.stdout.write(json.dumps(event, sort_keys=True))
            count += 1
        self.stderr.write(f"{count} events exported.")

"""``manage.py audit verify|checkpoint|export|ticket-fingerprint``: thin calls into neonpro.audit.services.

Every subcommand takes ``--operator/--reason/--ticket``; ``checkpoint`` and ``export`` are
recorded in the audit log under that operator. ``verify`` writes nothing: it must work on a
read-only replica and while appends are failing.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from neonpro.audit.operator import add_operator_arguments, operator_from_options, ticket_fingerprints
from neonpro.audit.services import (
    AuditUnavailableError,
    Checkpoint,
    CheckpointError,
    export_events,
    make_checkpoint,
    read_checkpoint,
    record_event,
    verify_chain,
)


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


def _load(path: str) -> Checkpoint:
    try:
        return read_checkpoint(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CommandError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    except (CheckpointError, UnicodeDecodeError) as exc:
        raise CommandError(f"checkpoint {path}: {exc}") from None


class Command(BaseCommand):
    help = "Verify the audit chain, checkpoint its head, export events as JSON lines, fingerprint a ticket."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        verify = sub.add_parser("verify", help="Check that no event was forged, edited, deleted or reordered.")
        verify.add_argument(
            "--checkpoint", default=None, help="a file `audit checkpoint` wrote: prove the chain up to it"
        )
        checkpoint = sub.add_parser("checkpoint", help="Verify, then write the signed head of the chain.")
        checkpoint.add_argument("--out", default=None, help="file to create (default: standard output)")
        export = sub.add_parser("export", help="Write events as JSON lines (for a SIEM).")
        export.add_argument("--since", type=str, default=None, help="ISO date/datetime (UTC if no offset).")
        export.add_argument("--until", type=str, default=None)
        fingerprint = sub.add_parser("ticket-fingerprint", help="The fingerprint events record for a ticket.")
        fingerprint.add_argument("reference", metavar="TICKET", help="the ticket reference, as given to --ticket")
        add_operator_arguments(parser)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        with operator_from_options(options):
            try:
                getattr(self, "_" + action.replace("-", "_"))(**options)
            except AuditUnavailableError as exc:
                raise CommandError(str(exc)) from None

    def _verify(self, *, checkpoint: str | None, **options: Any) -> None:
        anchor = _load(checkpoint) if checkpoint else None
        report = verify_chain(checkpoint=anchor)
        if not report.ok:
            raise CommandError("audit chain broken: " + "; ".join(report.problems))
        if report.legacy:
            self.stdout.write(f"{report.legacy} events from before keyed hashing (SHA-256 only) lead the chain.")
        if anchor is not None:
            self.stdout.write(
                f"Matches the checkpoint of {anchor.created_at}: {anchor.count} events up to event {anchor.last_id}."
            )
        self.stdout.write(f"Audit chain intact: {report.checked} events verified.")

    def _checkpoint(self, *, out: str | None, **options: Any) -> None:
        if out and Path(out).exists():
            raise CommandError(f"{out} exists: a checkpoint is never overwritten (choose a new file)")
        report = verify_chain()
        if not report.ok:
            raise CommandError("audit chain broken, not checkpointed: " + "; ".join(report.problems))
        try:
            head = make_checkpoint(report)
        except CheckpointError as exc:
            raise CommandError(str(exc)) from None
        details = {"count": head.count, "last_id": head.last_id, "head": head.last_hash.hex(), "key_id": head.key_id}
        record_event("audit.checkpoint", resource_type="audit.auditevent", details=details)
        if out:
            with Path(out).open("x", encoding="utf-8") as file:
                file.write(head.as_json())
            self.stderr.write(f"Checkpoint of {head.count} events (up to event {head.last_id}) written to {out}.")
        else:
            self.stdout.write(head.as_json(), ending="")

    def _export(self, *, since: str | None, until: str | None, **options: Any) -> None:
        start = _moment(since) if since else None
        end = _moment(until) if until else None
        record_event("audit.export", resource_type="audit.auditevent", details={"bounded": bool(start or end)})
        count = 0
        for event in export_events(since=start, until=end):
            self.stdout.write(json.dumps(event, sort_keys=True))
            count += 1
        self.stderr.write(f"{count} events exported.")

    def _ticket_fingerprint(self, *, reference: str, **options: Any) -> None:
        if not reference.strip():
            raise CommandError("the ticket must not be empty")
        for n, (key_id, fingerprint) in enumerate(ticket_fingerprints(reference)):
            self.stdout.write(f"{fingerprint}  audit key {key_id}{' (active)' if n == 0 else ''}")

"""Who runs an operator command: every event a command records names its operator.

Commands (``keys``, ``db``, ``audit``, ``careteam``, ``demo``) take ``--operator`` (default:
the OS account running them), ``--reason`` (one of :data:`REASONS`) and ``--ticket``, and run
inside :func:`operator_context`. While it is bound, an event recorded outside a web request
carries ``actor_role="operator"`` and the details ``operator``, ``reason`` and
``ticket_fingerprint``. A ticket reference is kept only as a keyed fingerprint: free text
from a command line could hold anything (an MRN typed by mistake), and the audit log holds
no free text; whoever has the ticket id can still check it against the log
(``audit ticket-fingerprint TICKET``). The fingerprint is an HMAC under a key derived from
the ``audit`` MAC key, prefixed with that key's id: the audit key is never re-keyed away
(old ones stay to verify the chain), so a fingerprint stays findable after any rotation,
the index key's included.
"""

from __future__ import annotations

import argparse
import contextvars
import getpass
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

REASONS = ("maintenance", "incident", "rotation", "support", "audit", "setup")
_OPERATOR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.@-]{0,63}$")
_FOUR_DIGITS = re.compile(r"\d{4}")


@dataclass(frozen=True)
class Operator:
    name: str
    reason: str
    ticket_fingerprint: str | None

    def details(self) -> dict[str, str]:
        details = {"operator": self.name, "reason": self.reason}
        if self.ticket_fingerprint:
            details["ticket_fingerprint"] = self.ticket_fingerprint
        return details


_current: contextvars.ContextVar[Operator | None] = contextvars.ContextVar("neonpro_operator", default=None)


def current_operator() -> Operator | None:
    return _current.get()


TICKET_LABEL = b"neonpro.audit.ticket.v1"


def ticket_fingerprint(ticket: str) -> str:
    """Keyed, one-way: the same ticket gives the same fingerprint (under the active audit
    key), which says nothing: 4 bytes of key id and 16 of HMAC, in hex."""
    from keys.crypto import sign

    return _fingerprint(*sign(_normalized(ticket), purpose="audit", label=TICKET_LABEL))


def ticket_fingerprints(ticket: str) -> list[tuple[int, str]]:
    """(audit key id, fingerprint) of ``ticket`` under every audit key still kept, the active
    one first: what an event recorded before a rotation carries."""
    from keys.crypto import sign_all

    return [
        (key_id, _fingerprint(key_id, tag))
        for key_id, tag in sign_all(_normalized(ticket), purpose="audit", label=TICKET_LABEL)
    ]


def _normalized(ticket: str) -> bytes:
    return ticket.strip().casefold().encode()


def _fingerprint(key_id: int, tag: bytes) -> str:
    return (key_id.to_bytes(4, "big") + tag[:16]).hex()


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (some containers)
        return "unknown"


def make_operator(name: str | None, reason: str | None, ticket: str | None) -> Operator:
    """Validate what an operator typed; ValueError says what is wrong with it."""
    name = name or os_user()
    if not _OPERATOR_NAME.match(name) or _FOUR_DIGITS.search(name):
        raise ValueError(
            f"--operator must be an account name (letters, digits, . _ @ -; no runs of four digits), not {name!r}"
        )
    reason = reason or "maintenance"
    if reason not in REASONS:
        raise ValueError(f"--reason must be one of {', '.join(REASONS)}, not {reason!r}")
    if ticket is not None and not ticket.strip():
        raise ValueError("--ticket must not be empty")
    return Operator(name=name, reason=reason, ticket_fingerprint=ticket_fingerprint(ticket) if ticket else None)


@contextmanager
def operator_context(
    name: str | None = None, reason: str | None = None, ticket: str | None = None
) -> Iterator[Operator]:
    operator = make_operator(name, reason, ticket)
    token = _current.set(operator)
    try:
        yield operator
    finally:
        _current.reset(token)


def add_operator_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the operator options to a command, or to each of its subcommands if it has them."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    targets = [p for action in subparsers for p in action.choices.values()] or [parser]
    for target in targets:
        group = target.add_argument_group("who and why (recorded in the audit log)")
        group.add_argument("--operator", default=None, help="your account name (default: the OS user running this)")
        group.add_argument("--reason", choices=REASONS, default=None, help="why (default: maintenance)")
        group.add_argument("--ticket", default=None, help="change or incident ticket (kept as a keyed fingerprint)")


@contextmanager
def operator_from_options(options: dict[str, object]) -> Iterator[Operator]:
    """``operator_context`` from a command's parsed options; CommandError for bad values."""
    from django.core.management.base import CommandError

    try:
        operator = make_operator(
            str(options.get("operator") or "") or None,
            str(options.get("reason") or "") or None,
            None if options.get("ticket") is None else str(options["ticket"]),
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    token = _current.set(operator)
    try:
        yield operator
    finally:
        _current.reset(token)

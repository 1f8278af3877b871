"""Refuse passwords known from breaches, offline (nothing online is reachable from here).

The list is a text file in the "Pwned Passwords" SHA-1 format, sorted by hash: one
``HASH:count`` per line, the hash 40 uppercase hex digits. It is binary-searched on disk, so
an operator's full download (tens of GB) costs a few dozen reads per check and no memory:
point ``NEONPRO_BREACHED_PASSWORDS_FILE`` at it. Without it the small list bundled in
``neonpro/accounts/data/breached-sha1.txt`` is used: the SHA-1 of Django's own list of
common passwords plus a few well-known breached ones that pass the length rule (counts of
1: the real counts are not known). ``python -m neonpro.accounts.breached OUT PASSWORD_FILE…``
writes such a file from plain password lists (one per line; ``.gz`` read as gzip).

SHA-1 here is the list's format, a lookup key, not a protection of anything.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError

BUNDLED = Path(__file__).resolve().parent / "data" / "breached-sha1.txt"


def list_path() -> Path:
    configured = getattr(settings, "NEONPRO_BREACHED_PASSWORDS_FILE", "")
    return Path(configured) if configured else BUNDLED


def sha1_hex(password: str) -> str:
    return hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper()


def breach_count(password: str, *, path: Path | None = None) -> int:
    """How often the list says ``password`` was seen in breaches (0: not in the list).

    Raises ImproperlyConfigured when the list cannot be read: a validator that silently
    passes everything would look like protection.
    """
    path = path or list_path()
    wanted = sha1_hex(password).encode()
    try:
        with path.open("rb") as fh:
            return _search(fh, os.fstat(fh.fileno()).st_size, wanted)
    except OSError as exc:
        raise ImproperlyConfigured(f"the breached-password list {path} cannot be read: {exc.strerror}") from None


def _line_at(fh: Any, offset: int) -> bytes:
    """The first whole line starting at or after ``offset`` (b"" past the end)."""
    if offset > 0:
        fh.seek(offset - 1)
        fh.readline()  # the rest of the line ``offset`` falls in (nothing if it starts one)
    else:
        fh.seek(0)
    return bytes(fh.readline().strip())


def _search(fh: Any, size: int, wanted: bytes) -> int:
    low, high = 0, size  # invariant: a line starting in [low, high) may hold ``wanted``
    while low < high:
        middle = (low + high) // 2
        line = _line_at(fh, middle)
        key = line.split(b":", 1)[0].upper()
        if line and key < wanted:
            low = middle + 1
        else:
            high = middle
    line = _line_at(fh, low)
    key, _, count = line.partition(b":")
    if key.upper() != wanted:
        return 0
    return int(count) if count.strip().isdigit() else 1


class BreachedPasswordValidator:
    """AUTH_PASSWORD_VALIDATORS entry: refuses a password the breach list holds."""

    def validate(self, password: str, user: Any = None) -> None:
        if breach_count(password) > 0:
            raise ValidationError(
                "This password is in lists of passwords leaked in data breaches: choose another.",
                code="password_breached",
            )

    def get_help_text(self) -> str:
        return "Your password can't be one known from data breaches."


def write_list(passwords: Iterable[str], out: Path) -> int:
    """Write the sorted ``HASH:1`` file of ``passwords``; returns how many distinct entries."""
    hashes = sorted({sha1_hex(p) for p in passwords if p})
    out.write_text("".join(f"{h}:1\n" for h in hashes))
    return len(hashes)


def _read_passwords(path: Path) -> list[str]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [line.strip() for line in fh]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m neonpro.accounts.breached OUT PASSWORD_FILE...", file=sys.stderr)
        return 2
    passwords = [p for source in argv[1:] for p in _read_passwords(Path(source))]
    print(f"{write_list(passwords, Path(argv[0]))} hashes written to {argv[0]}")
    return 0


if __name__ == "__main__":  # pragma: no cover - the command line entry; main() is tested
    raise SystemExit(main(sys.argv[1:]))

"""Normalisers for searchable (blind-indexed) fields.

A normaliser maps every spelling a user may type to one canonical string before it is
indexed, so ``123-45-6789`` and ``123 45 6789`` find the same row. Fields name one of these
by key (``search="digits"``); the name is stored in migrations, so names never change
meaning once published.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

_NON_DIGITS = re.compile(r"[^0-9]")
_NON_ALNUM = re.compile(r"[^0-9a-z]")
_SPACES = re.compile(r"\s+")


def exact(value: str) -> str:
    """The value as given."""
    return value


def _nfkc(value: str) -> str:
    # NFKC leaves ASCII unchanged, and most values are ASCII: skip the table walk for them.
    return value if value.isascii() else unicodedata.normalize("NFKC", value)


def digits(value: str) -> str:
    """ASCII digits only (SSN, phone numbers): punctuation, spaces and letters dropped."""
    if not value.isascii():
        value = unicodedata.normalize("NFKC", value)
    return _NON_DIGITS.sub("", value)


def email(value: str) -> str:
    """Trimmed and case-folded (mailbox names are case-insensitive in practice)."""
    return _nfkc(value).strip().casefold()


def alnum(value: str) -> str:
    """Case-folded letters and digits only (record numbers such as ``MRN-00123``)."""
    return _NON_ALNUM.sub("", _nfkc(value).casefold())


def text(value: str) -> str:
    """Case-folded, trimmed, inner whitespace collapsed to one space."""
    return _SPACES.sub(" ", _nfkc(value).strip().casefold())


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "exact": exact,
    "digits": digits,
    "email": email,
    "alnum": alnum,
    "text": text,
}

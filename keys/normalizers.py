"""Normalisers for searchable (blind-indexed) fields.

A normaliser maps every spelling a user may type to one canonical string before it is
indexed, so ``123-45-6789`` and ``123 45 6789`` find the same row. Fields name one of these
by key (``search="digits"``); the name is stored in migrations, so names never change
meaning once published.

Guarantees: every normaliser first applies Unicode NFKC, so full-width, compatibility and
canonically equivalent spellings (full-width digits and letters, ligatures, a decomposed
accent) index like the plain ones; and every normaliser is idempotent (normalising a
normalised value changes nothing), so a stored value and a search for its normal form meet.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

_NON_DIGITS = re.compile(r"[^0-9]")
_NON_ALNUM = re.compile(r"[^0-9a-z]")
# ASCII fast paths (most values): NFKC leaves ASCII unchanged and casefold() equals lower().
_ASCII_NON_DIGITS = {code: None for code in range(128) if not 0x30 <= code <= 0x39}


def _nfkc(value: str) -> str:
    # NFKC leaves ASCII unchanged, and most values are ASCII: skip the table walk for them.
    return value if value.isascii() else unicodedata.normalize("NFKC", value)


def digits(value: str) -> str:
    """ASCII digits only (SSN, phone numbers): punctuation, spaces and letters dropped."""
    if value.isascii():
        return value.translate(_ASCII_NON_DIGITS)
    return _NON_DIGITS.sub("", unicodedata.normalize("NFKC", value))


def email(value: str) -> str:
    """Trimmed and case-folded (mailbox names are case-insensitive in practice).

    Case folding can leave a sequence that NFKC composes differently (``ß`` plus an accent
    folds to ``ss`` plus the accent), so the folded value is normalised once more: without
    that, folding twice would not give the same string as folding once.
    """
    if value.isascii():
        return value.strip().lower()
    return _nfkc(_nfkc(value).strip().casefold())


def alnum(value: str) -> str:
    """Case-folded letters and digits only (record numbers such as ``MRN-00123``)."""
    if value.isascii():
        return _NON_ALNUM.sub("", value.lower())
    return _NON_ALNUM.sub("", unicodedata.normalize("NFKC", value).casefold())


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "digits": digits,
    "email": email,
    "alnum": alnum,
}

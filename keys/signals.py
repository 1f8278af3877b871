"""Signals the key inventory sends, so the audit log can record key operations.

``keys`` depends on nothing else in NeonPro; the audit app subscribes to this. Arguments
are ids and names only, never key material.
"""

from __future__ import annotations

from django.dispatch import Signal

# sender: the service function's module; kwargs: action ("key.create", "key.verify", ...),
# outcome ("success"/"error"), key_id (int | None), purpose (str), details (dict of ids/counts).
key_event = Signal()

# sender: keys.integrity; kwargs: model ("app.model"), pk, check ("seal" for a row whose seal
# failed, "value" for an encrypted value of a sealed row that did not open, "history" for a
# row older than its history), code (an identifier: seal_mismatch, legacy_row_refused, the
# DecryptionError class name, older_than_history), key_id (int | None). Never values.
integrity_failure = Signal()

"""Signals the key inventory sends, so the audit log can record key operations.

``keys`` depends on nothing else in NeonPro; the audit app subscribes to this. Arguments
are ids and names only, never key material.
"""

from __future__ import annotations

from django.dispatch import Signal

# sender: the service function's module; kwargs: action ("key.create", "key.verify", ...),
# outcome ("success"/"error"), key_id (int | None), purpose (str), details (dict of ids/counts).
key_event = Signal()

"""Integrity failures of sealed clinical rows reach the audit log.

``keys`` reports them through ``keys.signals.integrity_failure`` (it depends on nothing of
ours); this records one ``integrity.failed`` event per failure: the model, the row id, which
check failed and the fixed reason — never a value.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from keys.signals import integrity_failure
from neonpro.audit.services import record_event


@receiver(integrity_failure)
def _integrity_failed(
    sender: Any, model: str, pk: Any, check: str, code: str, key_id: int | None, **kwargs: Any
) -> None:
    record_event(
        "integrity.failed",
        outcome="error",
        resource_type=model,
        resource_id=pk,
        details={"check": check, "code": code, "key_id": key_id},
    )

"""One way to fetch a PHI row: visible to the caller, or "does not exist" — and audited.

A row the caller may not see and a row that does not exist get the same answer (404), and
both leave a ``denied`` audit event naming the id that was asked for.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import models

from neonpro.audit.services import record_event

M = TypeVar("M", bound=models.Model)


def label_of(model: type[models.Model]) -> str:
    return f"{model._meta.app_label}.{model._meta.model_name}"


def get_visible(model: type[M], pk: uuid.UUID | str, *, action: str, purpose: str = "") -> M:
    """The row ``pk`` through the model's scoped manager; raises ``model.DoesNotExist``."""
    try:
        return model._default_manager.get(pk=pk)
    except (model.DoesNotExist, ValueError, TypeError) as exc:  # type: ignore[attr-defined]
        record_event(action, outcome="denied", resource_type=label_of(model), resource_id=pk, purpose=purpose)
        raise model.DoesNotExist(f"No {model._meta.verbose_name} with that id.") from exc  # type: ignore[attr-defined]


def read_visible(
    model: type[M], pk: uuid.UUID | str, *, action: str, purpose_of: Callable[[M], str] | None = None
) -> M:
    """``get_visible`` plus the ``success`` read event (the denied one is ``get_visible``'s);
    ``purpose_of`` names the purpose (treatment, emergency) from the row just read."""
    obj = get_visible(model, pk, action=action)
    record_event(
        action,
        resource_type=label_of(model),
        resource_id=obj.pk,
        patient_id=patient_id_of(obj),
        purpose=purpose_of(obj) if purpose_of else "",
    )
    return obj


def save_changes(obj: M, changes: dict[str, Any], *, allowed: tuple[str, ...], action: str) -> M:
    """Apply ``changes`` (only ``allowed`` fields), validate, save them, audit which fields.

    Raises ValidationError naming any field outside ``allowed`` or any invalid value;
    nothing is written then. The audit event lists field names, never values.
    """
    from django.core.exceptions import ValidationError
    from django.db import transaction

    refused = sorted(set(changes) - set(allowed))
    if refused:
        raise ValidationError({name: "You cannot change this field." for name in refused})
    for name, value in changes.items():
        setattr(obj, name, value)
    obj.full_clean(exclude=[f.name for f in obj._meta.fields if f.name not in changes and f.is_relation])
    with transaction.atomic():
        obj.save(update_fields=[*changes, "updated_at"])
        record_event(
            action,
            resource_type=label_of(type(obj)),
            resource_id=obj.pk,
            patient_id=patient_id_of(obj),
            details={"fields": sorted(changes)},
        )
    return obj


def patient_id_of(obj: Any) -> uuid.UUID | None:
    if hasattr(obj, "patient_id"):
        return obj.patient_id  # type: ignore[no-any-return]
    return getattr(obj, "pk", None)

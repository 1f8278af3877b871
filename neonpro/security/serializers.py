"""Input shapes shared by every API: a serializer that refuses fields it does not know.

DRF ignores unknown fields, so a client that misspells ``diagnosis`` as ``diagnoses`` gets a
200 and loses its data silently, and a client that sends ``provider`` where only the
server decides it never learns it was ignored. ``StrictSerializer`` answers a 400 naming each
unknown field instead (together with any other field errors), and the OpenAPI schema says
so (``additionalProperties: false``, neonpro/security/schema.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

UNKNOWN_FIELD = "Unknown field."


class StrictSerializer(serializers.Serializer[Any]):
    def to_internal_value(self, data: Any) -> Any:
        unknown = sorted(str(name) for name in set(data) - set(self.fields)) if isinstance(data, Mapping) else []
        errors: dict[str, Any] = {name: [UNKNOWN_FIELD] for name in unknown}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
            raise serializers.ValidationError({**detail, **errors}) from None
        if errors:
            raise serializers.ValidationError(errors)
        return value

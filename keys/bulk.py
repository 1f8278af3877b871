"""``bulk_create`` of encrypted rows: every value of a column sealed in one tight loop.

Guarantees: the rows get exactly the envelopes ``save()`` would write (fresh nonce per value,
the same associated data, one unit of encryption budget each); each encrypted field's
values are sealed column by column right before Django builds the INSERT, and handed to
the field's ``pre_save`` through the instance, which uses one only for the value and primary
key it was sealed for; if sealing or the insert fails, no sealed token is left behind.
Models whose default queryset does not derive from ``EncryptedQuerySet`` still encrypt
correctly, one value at a time. Sealed models (``keys.integrity``) get version 1 and their
row seal here too, as ``save()`` gives them; ``update_conflicts`` is refused for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models

from keys.fields import encrypted_fields


class EncryptedQuerySet(models.QuerySet[Any]):
    def bulk_create(self, objs: Iterable[models.Model], *args: Any, **kwargs: Any) -> list[models.Model]:
        objs = list(objs)
        fields = encrypted_fields(self.model)
        sealed_rows = getattr(self.model, "row_integrity", None) is not None
        if not sealed_rows and (not fields or kwargs.get("update_conflicts")):
            return super().bulk_create(objs, *args, **kwargs)
        if sealed_rows and kwargs.get("update_conflicts"):
            raise TypeError(f"{self.model._meta.label}: rows are sealed, so bulk_create cannot update them")
        pk = self.model._meta.pk
        assert pk is not None
        for obj in objs:
            if obj.pk is None:  # what Django would do next; each value is bound to its row's UUID
                obj.pk = pk.get_pk_value_on_save(obj)
        rows = [obj.__dict__ for obj in objs]
        try:
            if sealed_rows:
                from keys.integrity import prepare_bulk

                prepare_bulk(self.model, objs)  # version 1 and the row seal, before the values
            for field in fields:
                field.seal_column(rows)
            return super().bulk_create(objs, *args, **kwargs)
        except BaseException:
            stashes = [field._stash for field in fields]
            for row in rows:
                for stash in stashes:
                    row.pop(stash, None)
            raise

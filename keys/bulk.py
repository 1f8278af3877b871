"""``bulk_create`` of encrypted rows: every value of a column sealed in one tight loop.

Guarantees: the rows get exactly the envelopes ``save()`` would write (fresh nonce per value,
the same associated data, one unit of encryption budget each); each encrypted field's
values are sealed column by column right before Django builds the INSERT, and handed to
the field's ``pre_save`` through the instance, which uses one only for the value and primary
key it was sealed for; if sealing or the insert fails, no sealed token is left behind.
Models whose default queryset does not derive from ``EncryptedQuerySet`` still encrypt
correctly, one value at a time.
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
        if not fields or kwargs.get("update_conflicts"):
            return super().bulk_create(objs, *args, **kwargs)
        pk = self.model._meta.pk
        assert pk is not None
        for obj in objs:
            if obj.pk is None:  # what Django would do next; each value is bound to its row's UUID
                obj.pk = pk.get_pk_value_on_save(obj)
        rows = [obj.__dict__ for obj in objs]
        try:
            for field in fields:
                field.seal_column(rows)
            return super().bulk_create(objs, *args, **kwargs)
        except BaseException:
            stashes = [field._stash for field in fields]
            for row in rows:
                for stash in stashes:
                    row.pop(stash, None)
            raise

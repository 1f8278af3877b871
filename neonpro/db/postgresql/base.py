"""Django's PostgreSQL backend, with server-side parameter binding that cannot overflow.

With server-side binding (on by default here: parameters never interpolated into SQL, bytea
sent in binary), every parameter travels in the protocol's Bind message, whose count is a
16-bit field: a statement with more than 65,535 parameters fails with "number of parameters
must be between 0 and 65535". Django's PostgreSQL backend assumes no limit. Guarantees:

* Bulk work Django batches itself (``bulk_create`` without UNNEST, ``bulk_update``, the
  deletion collector's DELETE and UPDATE batches) is cut into batches below the limit.
* Any other statement with more parameters than the protocol carries (a long ``pk__in``
  list, a cascade's ``IN (...)`` over every collected row, an admin bulk action) is sent with
  its parameters bound client-side by psycopg instead — the same statement, correctly
  quoted — so it runs rather than crashing.
* A pooled process reconnects within half a second of the database coming back: psycopg_pool
  retries a failed connection with exponential backoff (1, 2, 4, … s), which after a 15 s
  outage kept the app refusing for 8 s more; here it retries at a steady 0.5 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from django.db.backends.postgresql import base, operations

MAX_PARAMETERS = 65_535  # the Bind message's 16-bit parameter count
RECONNECT_EVERY_SECONDS = 0.5

try:
    from psycopg_pool.base import AttemptWithBackoff
except ImportError:  # pragma: no cover - psycopg-pool is pinned in requirements.txt
    pass
else:
    AttemptWithBackoff.INITIAL_DELAY = RECONNECT_EVERY_SECONDS
    AttemptWithBackoff.DELAY_BACKOFF = 1.0


class DatabaseOperations(operations.DatabaseOperations):
    def bulk_batch_size(self, fields: Sequence[Any], objs: Sequence[Any]) -> int:
        # Two parameters per field and row covers Django's densest batch (bulk_update's
        # CASE WHEN pk = %s THEN %s); plain VALUES inserts need one.
        per_row = 2 * max(len(fields), 1)
        return max(1, min(len(objs), MAX_PARAMETERS // per_row))


class BoundedServerBindingCursor(base.ServerBindingCursor):
    """Binds server-side, except for the rare statement with more parameters than the protocol carries."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if params is not None and len(params) > MAX_PARAMETERS:
            query = psycopg.ClientCursor(self.connection).mogrify(query, params)
            params = None
        return super().execute(query, params, **kwargs)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        if params.get("cursor_factory") is base.ServerBindingCursor:
            params["cursor_factory"] = BoundedServerBindingCursor
        return params

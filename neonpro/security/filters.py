"""Date-range filters of the lists (``?from=YYYY-MM-DD&to=YYYY-MM-DD``), both days included.

A range is two plain bounds on the list's date column, so a list filtered by it stays one
keyset query on the same index (the column follows the equality columns in every list's
index). Anything but an ISO calendar date, or a range that ends before it starts, is a
``ValidationError`` naming ``from`` or ``to`` (a 400), never a 500 and never an empty list
that looks like "no data".
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

FROM, TO = "from", "to"
BAD_DATE = "Enter a date as YYYY-MM-DD."
BAD_RANGE = "The range ends before it starts: `to` must be on or after `from`."
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")  # ASCII digits (\d matches any script's), no trailing newline


@dataclass(frozen=True)
class DateRange:
    start: dt.date | None = None
    end: dt.date | None = None

    def on_dates(self, column: str) -> dict[str, dt.date]:
        """ORM filters on a date column."""
        bounds = {}
        if self.start is not None:
            bounds[f"{column}__gte"] = self.start
        if self.end is not None:
            bounds[f"{column}__lte"] = self.end
        return bounds

    def on_times(self, column: str) -> dict[str, dt.datetime]:
        """ORM filters on a timestamp column: from the start of ``start`` to the end of ``end``,
        as days of the server's time zone."""
        zone = timezone.get_current_timezone()
        bounds = {}
        if self.start is not None:
            bounds[f"{column}__gte"] = dt.datetime.combine(self.start, dt.time.min, tzinfo=zone)
        if self.end is not None and self.end < dt.date.max:  # the last day has no end within range
            bounds[f"{column}__lt"] = dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
        return bounds

    def audit_details(self) -> dict[str, Any]:
        """For a list's audit event: whether it was filtered by date. Never the days
        themselves: dates of care are PHI, and the audit log holds none."""
        return {"dates": True} if self.start is not None or self.end is not None else {}


def date_range(params: Mapping[str, Any]) -> DateRange:
    """The range asked for in query parameters ``from`` and ``to`` (either may be absent).

    Raises ValidationError on ``from``/``to`` for a value that is not a calendar date as
    YYYY-MM-DD, and on ``to`` when it is before ``from``.
    """
    bounds: dict[str, dt.date | None] = {}
    refused: dict[str, str] = {}
    for name in (FROM, TO):
        try:
            bounds[name] = _date(params.get(name))
        except ValueError:
            refused[name] = BAD_DATE
    if refused:
        raise ValidationError(refused)
    start, end = bounds[FROM], bounds[TO]
    if start is not None and end is not None and end < start:
        raise ValidationError({TO: BAD_RANGE})
    return DateRange(start=start, end=end)


def _date(raw: Any) -> dt.date | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or not _ISO_DATE.match(raw):
        raise ValueError("not YYYY-MM-DD")
    return dt.date.fromisoformat(raw)  # ValueError for a day that does not exist (2024-02-30)

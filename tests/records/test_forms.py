"""Which stored lab results the record form can edit as rows (records/forms.py)."""

from __future__ import annotations

from typing import Any

import pytest

from records.forms import lab_rows


@pytest.mark.parametrize(
    ("stored", "rows"),
    [
        (None, []),
        ({"eosinophils": {"value": 0.4, "unit": "10^9/L"}}, [{"name": "eosinophils", "value": 0.4, "unit": "10^9/L"}]),
        ({"crp": {"value": 5}}, [{"name": "crp", "value": 5, "unit": ""}]),
        ({"hba1c": 7.9}, None),  # a bare value, as the API may store
        ([{"hba1c": 7.9}], None),
        ({"crp": {"value": "positive"}}, None),
        ({"crp": {"value": True}}, None),
        ({"crp": {"unit": "mg/L"}}, None),
        ({"crp": {"value": 5, "unit": 3}}, None),
        ({"crp": {"value": 5, "flag": "H"}}, None),
    ],
)
def test_only_name_value_unit_rows_are_editable(stored: Any, rows: list[dict[str, Any]] | None) -> None:
    assert lab_rows(stored) == rows

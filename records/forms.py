"""The clinician's record and appointment forms: the shape of the input only.

Rights, states and the rest of validation are records.services' (the pages show what it
refuses next to the fields it names). Times are entered and shown in UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django import forms
from django.utils import timezone

from neonpro.security.filters import FROM, TO

TEXT_LIMIT = 20000  # as the API's RecordWriteSerializer
APPOINTMENT_TEXT_LIMIT = 2000  # as the API's appointment serializers
LAB_ROWS = 5  # empty lab rows a form offers
MAX_LAB_ROWS = 50
LAB_PREFIX = "lab"
DATETIME_FORMAT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends
DUPLICATE_TEST = "This test is already listed above: one row per test."
RECORD_TEXT_FIELDS = ("diagnosis", "treatment_plan", "medications", "allergies", "notes")


def _date_input() -> forms.DateInput:
    return forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"})


class TextField(forms.CharField):
    """Free text; line breaks as the API stores them (browsers send a textarea's as CRLF)."""

    def to_python(self, value: Any) -> str:
        return str(super().to_python(value)).replace("\r\n", "\n")


def _text(label: str, limit: int = TEXT_LIMIT, rows: int = 3) -> TextField:
    return TextField(label=label, required=False, max_length=limit, widget=forms.Textarea(attrs={"rows": rows}))


class RecordForm(forms.Form):
    record_date = forms.DateField(label="Record date", initial=timezone.localdate, widget=_date_input())
    diagnosis = _text("Diagnosis")
    treatment_plan = _text("Treatment plan")
    medications = _text("Medications")
    allergies = _text("Allergies", rows=2)
    notes = _text("Notes", rows=4)

    def record_data(self) -> dict[str, Any]:
        """The date and the text fields filled in (a new record: what it was written with)."""
        data = {"record_date": self.cleaned_data["record_date"]}
        data.update({name: self.cleaned_data[name] for name in RECORD_TEXT_FIELDS if self.cleaned_data[name]})
        return data


class RecordEditForm(RecordForm):
    # The record's row version when the form was opened: a save at another version is refused.
    version = forms.IntegerField(min_value=0, widget=forms.HiddenInput)

    def changes(self, record: Any) -> dict[str, Any]:
        """The fields whose value differs from the record's now (a record written before
        allergies existed has None there, the same as an empty field)."""
        changes = {}
        for name in ("record_date", *RECORD_TEXT_FIELDS):
            current = getattr(record, name)
            if self.cleaned_data[name] != ("" if current is None else current):
                changes[name] = self.cleaned_data[name]
        return changes


class LabResultForm(forms.Form):
    """One lab result: a test's name, its value (a number) and its unit."""

    name = forms.CharField(label="Test", required=False, max_length=100)
    value = forms.FloatField(label="Value", required=False, widget=forms.TextInput(attrs={"inputmode": "decimal"}))
    unit = forms.CharField(label="Unit", required=False, max_length=50)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        name, value, unit = cleaned.get("name"), cleaned.get("value"), cleaned.get("unit")
        if (value is not None or unit or "value" in self.errors) and not name:
            self.add_error("name", "Name the test.")
        if name and value is None and "value" not in self.errors:
            self.add_error("value", "Enter the value as a number.")
        return cleaned


class BaseLabResultFormSet(forms.BaseFormSet):  # type: ignore[type-arg]
    def clean(self) -> None:
        seen: set[str] = set()
        for form in self.forms:
            name = form.cleaned_data.get("name")
            if not name:
                continue
            if name.casefold() in seen:
                form.add_error("name", DUPLICATE_TEST)
            seen.add(name.casefold())

    def lab_results(self) -> dict[str, dict[str, Any]] | None:
        """The rows filled in, as the record stores them: ``{"eosinophils": {"value": 0.4,
        "unit": "10^9/L"}}``; None when there is none."""
        results = {}
        for form in self.forms:
            name = form.cleaned_data.get("name")
            if name:
                value = form.cleaned_data["value"]
                value = int(value) if value.is_integer() else value  # 7, as typed, not 7.0
                results[name] = {"value": value, "unit": form.cleaned_data["unit"]}
        return results or None


def lab_formset(data: Mapping[str, Any] | None = None, rows: list[dict[str, Any]] | None = None) -> Any:
    """The lab rows of a record form: ``rows`` (a record's results) and a few empty ones."""
    rows = rows or []
    formset = forms.formset_factory(
        LabResultForm,
        formset=BaseLabResultFormSet,
        extra=max(LAB_ROWS - len(rows), 2),
        max_num=MAX_LAB_ROWS,
        absolute_max=MAX_LAB_ROWS,
        validate_max=True,
    )
    return formset(data, initial=rows, prefix=LAB_PREFIX)


def lab_rows(lab_results: Any) -> list[dict[str, Any]] | None:
    """A record's lab results as form rows, or None when they are in another shape than the
    one the form writes (the API takes any JSON): those are shown as they are, not edited."""
    if lab_results is None:
        return []
    if not isinstance(lab_results, dict):
        return None
    rows = []
    for name, result in lab_results.items():
        if not isinstance(result, dict) or not set(result) <= {"value", "unit"}:
            return None
        value, unit = result.get("value"), result.get("unit", "")
        if isinstance(value, bool) or not isinstance(value, int | float) or not isinstance(unit, str):
            return None
        rows.append({"name": name, "value": value, "unit": unit})
    return rows


class UTCDateTimeField(forms.DateTimeField):
    """A date and time without a zone (``datetime-local``), read and shown as UTC."""

    widget = forms.DateTimeInput(format=DATETIME_FORMAT, attrs={"type": "datetime-local"})
    input_formats = [DATETIME_FORMAT, "%Y-%m-%dT%H:%M:%S"]

    def to_python(self, value: Any) -> dt.datetime | None:
        with timezone.override(dt.UTC):
            return super().to_python(value)

    def prepare_value(self, value: Any) -> Any:
        with timezone.override(dt.UTC):
            return super().prepare_value(value)


def _duration() -> forms.IntegerField:
    return forms.IntegerField(label="Duration (minutes)", min_value=5, max_value=480, initial=30)


class AppointmentForm(forms.Form):
    scheduled_at = UTCDateTimeField(label="Date and time (UTC)")
    duration_minutes = _duration()
    reason = forms.CharField(label="Reason", required=False, max_length=APPOINTMENT_TEXT_LIMIT)
    notes = _text("Notes", APPOINTMENT_TEXT_LIMIT)


class RescheduleForm(forms.Form):
    scheduled_at = UTCDateTimeField(label="New date and time (UTC)")
    duration_minutes = _duration()


class ScheduleFilterForm(forms.Form):
    """The schedule's days (query parameters ``from`` and ``to``). Plain text here: the
    list's own date parser (neonpro.security.filters) checks them, with the API's messages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields[FROM] = forms.CharField(label="From", required=False, widget=_date_input())
        self.fields[TO] = forms.CharField(label="To", required=False, widget=_date_input())

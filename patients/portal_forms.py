"""The patient portal's forms: input shapes only. What a value may be is the model's and the
services' to say (their ValidationErrors are shown next to these fields by name)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.utils import timezone

from records.services import PROVIDER_REFUSED

DATETIME_LOCAL = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends


class ContactForm(forms.Form):
    """The fields a patient may change (patients.services.PATIENT_EDITABLE). Email and phone
    are checked by the Patient model's validators when the service saves them; an empty field
    clears the value."""

    email = forms.CharField(
        required=False,
        empty_value=None,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "maxlength": 254}),
    )
    phone = forms.CharField(
        required=False,
        empty_value=None,
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "tel", "maxlength": 32}),
        help_text="Digits, spaces and + ( ) - . — for example +1 555 0101.",
    )
    address = forms.CharField(
        required=False,
        empty_value=None,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "street-address", "maxlength": 1000}),
    )
    contact_by_email = forms.BooleanField(required=False, label="You may contact me by email")
    contact_by_sms = forms.BooleanField(required=False, label="You may contact me by text message (SMS)")

    def changes_to(self, patient: Any) -> dict[str, Any]:
        """The cleaned values that differ from the patient's (only those are saved and audited)."""
        return {name: value for name, value in self.cleaned_data.items() if getattr(patient, name) != value}


class AppointmentRequestForm(forms.Form):
    """A patient asks one of their care team for an appointment (the clinician confirms it)."""

    provider = forms.ChoiceField(
        label="Clinician",
        error_messages={"required": "Choose a clinician.", "invalid_choice": PROVIDER_REFUSED},
    )
    scheduled_at = forms.DateTimeField(
        label="Date and time (UTC)",
        input_formats=[DATETIME_LOCAL, "%Y-%m-%dT%H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL),
        error_messages={"required": "Choose a date and time.", "invalid": "Enter a date and time."},
    )
    reason = forms.CharField(
        label="Reason for the visit",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Optional; seen by your clinician.",
    )

    def __init__(self, *args: Any, clinicians: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = [("", "Choose a clinician"), *clinicians]  # type: ignore[attr-defined]

    def clean_scheduled_at(self) -> dt.datetime:
        value: dt.datetime = self.cleaned_data["scheduled_at"]
        if value <= timezone.now():
            raise forms.ValidationError("Choose a time in the future.")
        return value

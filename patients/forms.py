"""The clinician's patient forms: the page's shape only. The rules (which values a search or a
break-glass accepts, how long a reason must be) are the services', whose ValidationErrors the
views put next to these fields (neonpro.security.web.show_service_errors)."""

from __future__ import annotations

from typing import Any

from django import forms

from patients.break_glass import MIN_REASON

IDENTIFIERS = [("ssn", "SSN"), ("mrn", "MRN"), ("email", "Email"), ("phone", "Phone")]


class SearchForm(forms.Form):
    field = forms.ChoiceField(label="Search by", choices=IDENTIFIERS, initial="ssn")
    value = forms.CharField(
        label="Value",
        required=False,  # an empty value is the service's error, said next to the field
        help_text="An exact match; case, and dashes or spaces in an SSN, MRN or phone number, do not matter.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )


class EmergencyAccessForm(forms.Form):
    """Reason and duration. Ids ``emergency_<field>``: the form shares pages with the search's."""

    reason = forms.CharField(
        label="Reason for emergency access",
        required=False,
        max_length=2000,
        help_text=f"At least {MIN_REASON} characters. Privacy officers review every use.",
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    minutes = forms.IntegerField(
        label="Minutes",
        required=False,
        help_text="How long, from 1 to 1440 minutes (the default is the deployment's).",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "emergency_%s")
        super().__init__(*args, **kwargs)


class EmergencyAccessByIdentifierForm(EmergencyAccessForm):
    """Break-glass for the patient an identifier names: it travels in this POST body only."""

    identifier = forms.ChoiceField(label="Identifier", choices=IDENTIFIERS)
    value = forms.CharField(
        label="Value", required=False, widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"})
    )
    field_order = ["identifier", "value", "reason", "minutes"]

"""Demo data for the embedded mode (`make run`): accounts, patients, care teams, records.

Everything is written through the same services the app uses, under an explicit system
context. Passwords are random, returned to the caller to show once, and never stored in
plaintext; ``reset_demo_passwords`` issues new ones (audited) when they are lost. Every demo
account has an authenticator enrolled (clinicians and administrators must): its secret is
returned with the password, to type into an authenticator app.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from neonpro.accounts.mfa import enrol_with_secret
from neonpro.accounts.services import ensure_administrators_group
from neonpro.accounts.signals import account_change_via
from neonpro.security.context import system_context
from patients.services import register_patient
from records.models import Appointment, MedicalRecord

DEMO_PATIENTS = [
    ("Ada Demo", dt.date(1984, 3, 14), "MRN-000101", "900-12-0001", "ada.demo@example.org", "+1 555 0101"),
    ("Ben Sample", dt.date(1979, 11, 2), "MRN-000102", "900-12-0002", "ben.sample@example.org", "+1 555 0102"),
    ("Cleo Test", dt.date(2001, 6, 30), "MRN-000103", "900-12-0003", "cleo.test@example.org", "+1 555 0103"),
]
DEMO_USERS = [
    ("admin", "admin", True),
    ("dr.house", "clinician", False),
    ("dr.grey", "clinician", False),
    ("patient.ada", "patient", False),
]
CARE_TEAMS = {"dr.house": ["MRN-000101", "MRN-000102"], "dr.grey": ["MRN-000103"]}


@dataclass(frozen=True)
class Credential:
    username: str
    role: str
    password: str
    totp_secret: str = ""  # base32, for an authenticator app (neonpro.accounts.mfa)


def demo_present() -> bool:
    return get_user_model().objects.filter(username="admin").exists()


def seed_demo() -> list[Credential]:
    """Create the demo data once; return the new accounts' passwords ([] when already present)."""
    if demo_present():
        return []
    user_model = get_user_model()
    credentials, users = [], {}
    with transaction.atomic(), system_context("demo seed"):
        for username, role, is_admin in DEMO_USERS:
            password = secrets.token_urlsafe(12)
            users[username] = user_model.objects.create_user(
                username=username, password=password, role=role, is_staff=is_admin
            )
            if is_admin:  # what a deployment's administrators get, not a superuser
                users[username].groups.add(ensure_administrators_group())
            credentials.append(Credential(username, role, password, enrol_with_secret(users[username])))
        patients = {}
        for name, dob, mrn, ssn, email, phone in DEMO_PATIENTS:
            user = users["patient.ada"] if mrn == "MRN-000101" else None
            patients[mrn] = register_patient(
                full_name=name, date_of_birth=dob, mrn=mrn, ssn=ssn, email=email, phone=phone, user=user
            )
        for clinician, mrns in CARE_TEAMS.items():
            for mrn in mrns:
                patients[mrn].care_team.create(clinician=users[clinician])
                _clinical_history(patients[mrn], users[clinician])
    return credentials


def reset_demo_passwords() -> list[Credential]:
    """New random passwords and authenticator secrets for the demo accounts that exist (each
    change audited; their sessions end)."""
    credentials = []
    user_model = get_user_model()
    with transaction.atomic():
        for username, _role, _is_admin in DEMO_USERS:
            user = user_model.objects.filter(username=username).first()
            if user is None:
                continue
            password = secrets.token_urlsafe(12)
            with account_change_via("demo_reset_passwords"):  # audited by neonpro.accounts.signals
                user.set_password(password)
                user.save(update_fields=["password"])
            credentials.append(Credential(username, user.role, password, enrol_with_secret(user)))
    return credentials


def _clinical_history(patient: Any, clinician: Any) -> None:
    MedicalRecord.objects.create(
        patient=patient,
        provider=clinician,
        record_date=timezone.localdate() - dt.timedelta(days=30),
        diagnosis="Seasonal allergic rhinitis (demo)",
        treatment_plan="Antihistamine as needed; review in 3 months",
        medications="Cetirizine 10 mg",
        allergies="Penicillin (rash)",
        lab_results={"eosinophils": {"value": 0.4, "unit": "10^9/L"}},
        notes="Demo record.",
    )
    Appointment.objects.create(
        patient=patient,
        provider=clinician,
        scheduled_at=timezone.now().replace(microsecond=0) + dt.timedelta(days=7),
        status=Appointment.Status.CONFIRMED,
        reason="Follow-up (demo)",
    )

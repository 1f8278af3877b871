"""``manage.py demo seed``: demo users, patients, care teams and records.

Passwords are printed once, when they are created. Everything is written through the same
services the app uses, under an explicit system context.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

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


class Command(BaseCommand):
    help = "Create demo users, patients, care teams and records (once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["seed"])

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(username="admin").exists():
            self.stdout.write("Demo data already present (credentials were printed when it was created).")
            return
        credentials, users = [], {}
        with transaction.atomic(), system_context("demo seed"):
            for username, role, is_admin in DEMO_USERS:
                password = secrets.token_urlsafe(12)
                users[username] = user_model.objects.create_user(
                    username=username, password=password, role=role, is_staff=is_admin, is_superuser=is_admin
                )
                credentials.append((username, role, password))
            patients = {}
            for name, dob, mrn, ssn, email, phone in DEMO_PATIENTS:
                user = users["patient.ada"] if mrn == "MRN-000101" else None
                patients[mrn] = register_patient(
                    full_name=name, date_of_birth=dob, mrn=mrn, ssn=ssn, email=email, phone=phone, user=user
                )
            for clinician, mrns in CARE_TEAMS.items():
                for mrn in mrns:
                    patients[mrn].care_team.create(clinician=users[clinician])
                    self._clinical_history(patients[mrn], users[clinician])
        self.stdout.write(f"Created {len(DEMO_PATIENTS)} demo patients and these accounts (shown only now):")
        for username, role, password in credentials:
            self.stdout.write(f"  {username:<12} {role:<10} {password}")

    def _clinical_history(self, patient: Any, clinician: Any) -> None:
        MedicalRecord.objects.create(
            patient=patient,
            provider=clinician,
            record_date=timezone.localdate() - dt.timedelta(days=30),
            diagnosis="Seasonal allergic rhinitis (demo)",
            treatment_plan="Antihistamine as needed; review in 3 months",
            medications="Cetirizine 10 mg",
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

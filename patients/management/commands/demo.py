"""``manage.py demo seed``: demo users and patients; passwords are printed once, at creation."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from patients.services import register_patient

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


class Command(BaseCommand):
    help = "Create demo users and patients (once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["seed"])

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(username="admin").exists():
            self.stdout.write("Demo data already present (credentials were printed when it was created).")
            return
        credentials = []
        with transaction.atomic():
            for username, role, is_admin in DEMO_USERS:
                password = secrets.token_urlsafe(12)
                user_model.objects.create_user(
                    username=username,
                    password=password,
                    role=role,
                    is_staff=is_admin,
                    is_superuser=is_admin,
                )
                credentials.append((username, role, password))
            for name, dob, mrn, ssn, email, phone in DEMO_PATIENTS:
                register_patient(full_name=name, date_of_birth=dob, mrn=mrn, ssn=ssn, email=email, phone=phone)
        self.stdout.write(f"Created {len(DEMO_PATIENTS)} demo patients and these accounts (shown only now):")
        for username, role, password in credentials:
            self.stdout.write(f"  {username:<12} {role:<10} {password}")

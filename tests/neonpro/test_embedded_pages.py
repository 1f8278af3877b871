"""Every page of the web UI opens in the embedded mode of `make run` (SQLite: no DISTINCT ON,
no row-level security, the ORM's scoping alone) for each demo role — in a process of its own."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import TEST_MASTER_KEY
from tests.subprocess_django import manage, sqlite_env

SCRIPT = r"""
from django.test import Client
from neonpro.accounts.models import User
from neonpro.security.context import system_context
from patients.models import Patient
from records.models import Appointment, MedicalRecord
from tests.conftest import sign_in_as

with system_context("embedded pages check"):
    ben = Patient.objects.get(mrn="MRN-000102")
    record = MedicalRecord.objects.filter(patient=ben).first()
    visit = Appointment.objects.filter(patient=ben).first()
pages = {
    "dr.house": [
        "/patients/", "/patients/search/", f"/patients/{ben.pk}/", f"/patients/{ben.pk}/records/new/",
        f"/records/{record.pk}/", f"/records/{record.pk}/edit/", f"/patients/{ben.pk}/appointments/new/",
        "/appointments/", f"/appointments/{visit.pk}/reschedule/", "/notifications/", "/accounts/sessions/",
    ],
    "patient.ada": ["/portal/", "/portal/contact/", "/portal/appointments/new/", "/portal/export/"],
    "admin": ["/", "/admin/", "/admin/security/dashboard/", "/admin/audit/auditevent/"],
}
for username, urls in pages.items():
    client = sign_in_as(Client(HTTP_HOST="localhost"), User.objects.get(username=username))
    for url in urls:
        status = client.get(url, secure=True).status_code
        assert status == 200, (username, url, status)
found = sign_in_as(Client(HTTP_HOST="localhost"), User.objects.get(username="dr.house")).post(
    "/patients/search/", {"field": "ssn", "value": "900120002"}, secure=True
)
assert found.status_code == 200 and "Ben Sample" in found.content.decode()
print("embedded pages: ok")
"""


def test_every_page_opens_on_the_embedded_sqlite_default(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path, TEST_MASTER_KEY)
    manage(env, "demo", "seed")

    assert "embedded pages: ok" in manage(env, "shell", "-c", SCRIPT)

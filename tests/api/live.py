"""The live API as its clients reach it: over HTTPS, signed in, on the served app's own database.

* ``signed_in(app, username)``: a ``requests.Session`` signed in through the real sign-in form
  (GET the form, POST username and password with its CSRF token and a Referer, then the code
  of the account's authenticator at ``/accounts/login/verify/``), which then sends
  ``X-CSRFToken`` and ``Referer`` on every request, as a browser's JavaScript would.
* ``seed_canaries(app)``: patients no demo clinician may see, with unique names, SSNs, MRNs,
  emails, phones and clinical text, written into the served app's database as an operator
  would (``manage.py shell``); every response a caller gets is searched for those values.
* ``Caller``: who calls (a clinician's session, or an agent's bearer token from
  ``manage.py agents token``), with the ids in its scope: one parametrised fixture, so a run per
  kind of caller is one more parameter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.served import ServedApp, totp_code

TIMEOUT = 30


def signed_in(
    app: ServedApp, username: str, password: str | None = None, totp_secret: str | None = None
) -> requests.Session:
    session = requests.Session()
    session.trust_env, session.verify = False, str(app.cert)
    login = f"{app.url}/accounts/login/"
    form = session.get(login, timeout=TIMEOUT)
    assert form.status_code == 200, form.status_code
    answer = session.post(
        login,
        headers={"Referer": login},
        data={
            "username": username,
            "password": password or app.credentials[username],
            "csrfmiddlewaretoken": session.cookies["__Host-csrftoken"],
        },
        timeout=TIMEOUT,
    )
    if answer.url.endswith("/accounts/login/verify/"):  # the second factor: the authenticator's code
        secret = totp_secret or app.totp_secrets[username]
        code = totp_code(secret, account=f"{username}:{secret}")  # each served app has its own authenticators
        verify = f"{app.url}/accounts/login/verify/"
        answer = session.post(
            verify,
            headers={"Referer": verify},
            data={"token": code, "csrfmiddlewaretoken": session.cookies["__Host-csrftoken"]},
            timeout=TIMEOUT,
        )
    assert answer.status_code == 200 and "/accounts/login/" not in answer.url, f"sign-in of {username} failed"
    # Django rotates the CSRF token at sign-in: the one to send is the new cookie's.
    session.headers.update({"X-CSRFToken": session.cookies["__Host-csrftoken"], "Referer": f"{app.url}/"})
    return session


@dataclass
class Canaries:
    """PHI of patients outside the demo clinicians' care teams: none of it may ever be served."""

    patient_ids: list[str]
    record_ids: list[str]
    appointment_ids: list[str]
    values: list[str] = field(default_factory=list)
    keeper: str = ""  # the clinician on the first canary's care team (the control)
    keeper_password: str = ""
    keeper_totp: str = ""  # the keeper's authenticator secret (base32)

    def found_in(self, text: str) -> list[str]:
        folded = text.casefold()
        return [value for value in self.values if value.casefold() in folded]


_CANARY_SCRIPT = r"""
import datetime as dt, json, secrets
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from neonpro.security.context import system_context
from patients.models import CareTeamMembership
from patients.services import register_patient
from records.models import Appointment, MedicalRecord

out = {"patient_ids": [], "record_ids": [], "appointment_ids": [], "values": []}
out["keeper"], out["keeper_password"] = "dr.canary-" + secrets.token_hex(4), secrets.token_urlsafe(18)
with transaction.atomic(), system_context("test canaries: patients outside every demo care team"):
    keeper = get_user_model().objects.create_user(
        out["keeper"], password=out["keeper_password"], role="clinician", first_name="Canary", last_name="Keeper"
    )
    from neonpro.accounts.mfa import enrol_with_secret

    out["keeper_totp"] = enrol_with_secret(keeper)
    for n in range(2):
        tag = secrets.token_hex(6)
        digits = "".join(secrets.choice("0123456789") for _ in range(9))
        values = {
            "full_name": "Zebulon Canarywing " + tag,
            "mrn": "CNRY-" + tag.upper(),
            "ssn": digits[:3] + "-" + digits[3:5] + "-" + digits[5:],
            "email": "canary." + tag + "@example.org",
            "phone": "+1 555 " + digits[:4] + " " + digits[4:8],
            "address": tag + " Canary Lane, Nowhere",
        }
        patient = register_patient(date_of_birth=dt.date(1950, 1, 1 + n), **values)
        if n == 0:  # on a care team, with clinical history; the other on none
            CareTeamMembership.objects.create(patient=patient, clinician=keeper)
            record = MedicalRecord.objects.create(
                patient=patient, provider=keeper, diagnosis="Canary diagnosis " + tag, notes="Canary note " + tag
            )
            appointment = Appointment.objects.create(
                patient=patient, provider=keeper, scheduled_at=timezone.now() + dt.timedelta(days=3),
                reason="Canary reason " + tag,
            )
            out["record_ids"].append(str(record.pk))
            out["appointment_ids"].append(str(appointment.pk))
            values.update(diagnosis="Canary diagnosis " + tag, note="Canary note " + tag, reason="Canary reason " + tag)
        out["patient_ids"].append(str(patient.pk))
        out["values"].extend(values.values())
print("CANARIES " + json.dumps(out))
"""


def seed_canaries(app: ServedApp) -> Canaries:
    result = app.manage("shell", "-c", _CANARY_SCRIPT)
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("CANARIES ")]
    return Canaries(**json.loads(line.removeprefix("CANARIES ")))


@dataclass
class Caller:
    """Who calls the live API, the credentials every request carries (a session's cookies and
    CSRF header; an agent's ``Authorization``), and what it may see (ids of each kind)."""

    name: str
    session: requests.Session
    scope: dict[str, list[str]]
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)

    @classmethod
    def with_session(cls, name: str, app: ServedApp, session: requests.Session) -> Caller:
        return cls(
            name=name,
            session=session,
            scope=scope_of(app, session),
            # A session is bound to the user agent that signed in (NEONPRO_SESSION_BIND_USER_AGENT):
            # another one (the fuzzer's own) would end it.
            headers={
                key: str(value)
                for key, value in session.headers.items()
                if key in ("X-CSRFToken", "Referer", "User-Agent")
            },
            cookies={key: value for key, value in session.cookies.items() if value is not None},
        )

    @classmethod
    def with_token(cls, name: str, app: ServedApp, token: str) -> Caller:
        """An agent: no session, no cookies, its bearer token on every request."""
        session = requests.Session()
        session.trust_env, session.verify = False, str(app.cert)
        session.headers["Authorization"] = f"Bearer {token}"
        return cls(
            name=name, session=session, scope=scope_of(app, session), headers={"Authorization": f"Bearer {token}"}
        )

    def get(self, app: ServedApp, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(f"{app.url}{path}", timeout=TIMEOUT, **kwargs)

    def post(self, app: ServedApp, path: str, body: Any) -> requests.Response:
        return self.session.post(f"{app.url}{path}", json=body, timeout=TIMEOUT)


def scope_of(app: ServedApp, session: requests.Session) -> dict[str, list[str]]:
    """The ids a caller sees (first pages): its patients, their records, its appointments."""

    def ids(path: str) -> list[str]:
        answer = session.get(f"{app.url}{path}", timeout=TIMEOUT)
        assert answer.status_code == 200, (path, answer.status_code)
        return [row["id"] for row in answer.json()]

    patients = ids("/api/v1/patients/")
    records = [rid for pid in patients for rid in ids(f"/api/v1/patients/{pid}/records/")]
    return {"patients": patients, "records": records, "appointments": ids("/api/v1/appointments/")}

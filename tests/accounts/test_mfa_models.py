"""The second-factor models on their own: redacted names, refusal while throttled, a gone pending user."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from neonpro.accounts import mfa
from neonpro.accounts.mfa_models import RecoveryCode, RecoveryCodeSet, TOTPDevice
from tests.accounts.signin_helpers import browser_client, code, enrol, sign_in_password

pytestmark = pytest.mark.django_db


def test_names_never_show_a_secret(user_factory: Any) -> None:
    user = user_factory("clinician", username="doc")
    device = mfa.start_enrolment(user)
    mfa.confirm_enrolment(user, device, code(device), session_key=None)
    codes = RecoveryCodeSet.objects.get(user=user)
    for thing in (device, device.secret, codes, RecoveryCode.objects.filter(device=codes).first()):
        text = str(thing)
        assert str(thing.pk) in text and device.secret.key not in text and "doc" not in text


def test_a_throttled_device_refuses_even_the_right_code(user_factory: Any) -> None:
    user = user_factory("clinician", username="doc")
    device = enrol(user)
    mfa.start_enrolment(user)
    recovery = RecoveryCodeSet.objects.create(user=user, name="Recovery codes")
    for throttled in (device, recovery):
        throttled.throttling_failure_count = 3
        throttled.throttling_failure_timestamp = timezone.now()
        throttled.save()
    assert device.verify_token(code(device)) is False
    assert recovery.verify_token("AAAAA-BBBBB") is False
    assert isinstance(TOTPDevice.objects.get(pk=device.pk), TOTPDevice)


def test_a_pending_sign_in_of_a_deactivated_account_starts_over(user_factory: Any) -> None:
    user = user_factory("clinician", username="doc")
    enrol(user)
    client = browser_client()
    sign_in_password(client, "doc")
    user.is_active = False
    user.save(update_fields=["is_active"])

    answer = client.get("/accounts/login/verify/", secure=True)

    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/")

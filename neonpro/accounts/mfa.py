"""Second-factor use cases: enrol an authenticator app, verify a code, recovery codes.

Guarantees: a secret is shown only while enrolling (QR code and text, rendered here: no
outside service); a device counts only once confirmed with a code from it; recovery codes
are returned once and stored as keyed hashes, each good once; every change is audited
(``mfa.*``, never a secret or code) and sends ``credentials_changed`` (reason
``mfa_change``) so the session store ends the user's other sessions.
"""

from __future__ import annotations

import base64
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import segno
from django.conf import settings
from django.db import transaction

from keys.crypto import sign, verify_signature
from neonpro.accounts.mfa_models import TOTP_DIGITS, TOTP_STEP, RecoveryCode, RecoveryCodeSet, TOTPDevice
from neonpro.accounts.models import User
from neonpro.accounts.signals import credentials_changed
from neonpro.audit.services import record_event

SECRET_BYTES = 20  # 160 bits, RFC 4226's recommendation for HMAC-SHA-1
RECOVERY_LABEL = b"neonpro.accounts.recovery_code.v1"
RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off paper
RECOVERY_LENGTH = 10  # two groups of five: 50 bits
RESOURCE = "accounts.user"


class MFAError(Exception):
    """A second-factor change that cannot be made (the message says why, never a secret)."""


@dataclass(frozen=True)
class Verification:
    device: Any  # the django-otp device that accepted the code, or None
    reason: str = ""  # why not: invalid, replayed, throttled, used_recovery_code, no_device


def mfa_required(user: User) -> bool:
    """Clinicians and administrators (NEONPRO_MFA_REQUIRED_ROLES) must have a second factor."""
    return user.role in settings.NEONPRO_MFA_REQUIRED_ROLES


def has_second_factor(user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def needs_second_factor(user: User) -> bool:
    """Whether signing in takes a code: required for the role, or enrolled by choice."""
    return mfa_required(user) or has_second_factor(user)


def start_enrolment(user: User) -> TOTPDevice:
    """A new, unconfirmed authenticator for ``user`` (an earlier unconfirmed one is dropped)."""
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.create_with_key(user=user, key=secrets.token_bytes(SECRET_BYTES), confirmed=False)


def pending_enrolment(user: User, device_id: Any) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=False, pk=device_id).first()


def secret_text(device: TOTPDevice) -> str:
    """The secret as an authenticator app takes it typed in: base32, in groups of four."""
    text = base64.b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def provisioning_uri(device: TOTPDevice) -> str:
    issuer = str(settings.OTP_TOTP_ISSUER).replace(":", "")
    label = quote(f"{issuer}:{device.user.get_username()}")
    params = urlencode(
        {
            "secret": base64.b32encode(device.bin_key).decode().rstrip("="),
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": TOTP_DIGITS,
            "period": TOTP_STEP,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{params}"


def qr_data_uri(device: TOTPDevice) -> str:
    """The provisioning URI as an SVG QR code in a ``data:`` URI (the CSP allows data: images)."""
    return str(segno.make(provisioning_uri(device), error="m").svg_data_uri(scale=5, border=2))


def confirm_enrolment(user: User, device: TOTPDevice, token: str, *, session_key: str | None) -> list[str]:
    """Confirm ``device`` with a code from it; it replaces any earlier authenticator. Returns
    fresh recovery codes (show them once). Raises MFAError when the code is wrong."""
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        if not device.verify_token(token):
            raise MFAError("That code is not right: check the time on your phone and enter the current code.")
        replaced = TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()[0] > 0
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = _new_recovery_codes(user)
    _changed(user, "mfa.replaced" if replaced else "mfa.enrolled", session_key)
    return codes


def regenerate_recovery_codes(user: User, *, session_key: str | None) -> list[str]:
    if not has_second_factor(user):
        raise MFAError("Set up an authenticator app first: recovery codes go with it.")
    with transaction.atomic():
        codes = _new_recovery_codes(user)
    _changed(user, "mfa.recovery_codes_regenerated", session_key)
    return codes


def remove_second_factor(user: User, *, session_key: str | None) -> None:
    """Patients may go back to password-only; clinicians and administrators may only replace."""
    if mfa_required(user):
        raise MFAError("Your role requires a second factor: you can replace your authenticator, not remove it.")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        RecoveryCodeSet.objects.filter(user=user).delete()
    _changed(user, "mfa.removed", session_key)


def verify_second_factor(user: User, token: str) -> Verification:
    """Check a code from the user's authenticator, or one of their recovery codes."""
    token = (token or "").strip()
    with transaction.atomic():
        if _looks_like_totp(token):
            device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
        else:
            device = RecoveryCodeSet.objects.select_for_update().filter(user=user).first()
        if device is None:
            return Verification(None, "no_device")
        if not device.verify_is_allowed()[0]:
            return Verification(None, "throttled")
        if device.verify_token(token):
            return Verification(device)
    return Verification(None, _why_not(device, token))


def _looks_like_totp(token: str) -> bool:
    return token.replace(" ", "").isdigit()


def _why_not(device: TOTPDevice | RecoveryCodeSet, token: str) -> str:
    if isinstance(device, TOTPDevice):
        return "replayed" if device.is_replay(token) else "invalid"
    used = device.codes.filter(used_at__isnull=False)
    return "used_recovery_code" if any(recovery_code_matches(code, token) for code in used) else "invalid"


def _normalized_code(token: str) -> bytes:
    text = unicodedata.normalize("NFKC", token).upper()
    return "".join(ch for ch in text if ch.isalnum()).encode()


def recovery_code_matches(code: RecoveryCode, token: str) -> bool:
    return verify_signature(
        _normalized_code(token), bytes(code.digest), purpose="audit", label=RECOVERY_LABEL, key_id=code.key_id
    )


def _new_recovery_codes(user: User) -> list[str]:
    RecoveryCodeSet.objects.filter(user=user).delete()
    device = RecoveryCodeSet.objects.create(user=user, name="Recovery codes")
    codes = []
    for _ in range(int(settings.NEONPRO_RECOVERY_CODES)):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
        key_id, digest = sign(raw.encode(), purpose="audit", label=RECOVERY_LABEL)
        RecoveryCode.objects.create(device=device, key_id=key_id, digest=digest)
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def _changed(user: User, action: str, session_key: str | None) -> None:
    record_event(action, resource_type=RESOURCE, resource_id=user.pk)
    credentials_changed.send(sender=User, user=user, reason="mfa_change", keep_session_key=session_key)


def enrol_with_secret(user: User) -> str:
    """Operator path (demo accounts): a confirmed authenticator at once; returns its base32
    secret to show once. Replaces any earlier one (audited, other sessions ended)."""
    with transaction.atomic():
        replaced = TOTPDevice.objects.filter(user=user).delete()[0] > 0
        device = TOTPDevice.create_with_key(user=user, key=secrets.token_bytes(SECRET_BYTES), confirmed=True)
    _changed(user, "mfa.replaced" if replaced else "mfa.enrolled", None)
    return secret_text(device).replace(" ", "")

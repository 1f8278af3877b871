"""Second factors, as django-otp devices of our own (no ``otp_totp``/``otp_static`` plugins).

* ``TOTPDevice``: an authenticator app (RFC 6238, SHA-1, 6 digits, 30 s). Its secret is
  encrypted at rest with the ``keys`` field encryption (django-otp's own TOTP model keeps it
  in clear), in a row of its own (``TOTPSecret``, UUID key) it is bound to: django-otp
  addresses devices by integer id. A code is good once: a code at or before the last accepted
  time step is refused (replay). Wrong codes are throttled (django-otp's exponential wait).
  No clock-drift learning: an accepted "next" code must not move the window forward.
* ``RecoveryCodeSet``: one per user, holding ``RecoveryCode`` rows, each stored only as a
  keyed hash (HMAC under a key derived from the ``audit`` MAC key, prefixed by its id) and
  usable once.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from django_otp.models import Device, ThrottlingMixin, TimestampMixin
from django_otp.oath import TOTP

from keys.fields import EncryptedCharField

TOTP_STEP = 30
TOTP_DIGITS = 6
TOTP_TOLERANCE = 1  # the previous, current and next code (clocks a little off)


def _throttle_factor() -> int:
    return int(getattr(settings, "NEONPRO_TOTP_THROTTLE_FACTOR", 1))


class TOTPDevice(TimestampMixin, ThrottlingMixin, Device):
    id = models.BigAutoField(primary_key=True)
    last_t = models.BigIntegerField(default=-1, help_text="Time step of the last accepted code (no reuse).")

    class Meta:
        verbose_name = "authenticator app"

    def __str__(self) -> str:
        return f"Authenticator app {self.pk}"

    @property
    def bin_key(self) -> bytes:
        return bytes.fromhex(self.secret.key)

    @classmethod
    def create_with_key(cls, *, user: Any, key: bytes, confirmed: bool, name: str = "Authenticator app") -> TOTPDevice:
        device = cls.objects.create(user=user, name=name, confirmed=confirmed)
        TOTPSecret.objects.create(device=device, key=key.hex())
        return device

    def _totp(self, at: float | None = None) -> TOTP:
        totp = TOTP(self.bin_key, TOTP_STEP, 0, TOTP_DIGITS, 0)
        totp.time = time.time() if at is None else at
        return totp

    def get_throttle_factor(self) -> int:
        return _throttle_factor()

    def verify_token(self, token: Any) -> bool:
        allowed, _ = self.verify_is_allowed()
        if not allowed:
            return False
        code = _as_code(token)
        totp = self._totp()
        if code is not None and totp.verify(code, TOTP_TOLERANCE, self.last_t + 1):
            self.last_t = totp.t()
            self.throttle_reset(commit=False)
            self.set_last_used_timestamp(commit=False)
            self.save()
            return True
        self.throttle_increment(commit=True)
        return False

    def is_replay(self, token: Any) -> bool:
        """Whether ``token`` is a code of this device already used (its step is not after the last)."""
        code = _as_code(token)
        return code is not None and bool(self._totp().verify(code, TOTP_TOLERANCE, 0))


class TOTPSecret(models.Model):
    """The shared secret of one authenticator, encrypted and bound to this row (UUID key, as
    encrypted fields need; django-otp's devices must have integer ids)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device = models.OneToOneField("TOTPDevice", on_delete=models.CASCADE, related_name="secret")
    key = EncryptedCharField(max_length=80, help_text="The shared secret, hex (encrypted at rest).")

    class Meta:
        verbose_name = "authenticator secret"

    def __str__(self) -> str:
        return f"Authenticator secret {self.pk}"


def _as_code(token: Any) -> int | None:
    text = str(token).strip().replace(" ", "")
    if len(text) != TOTP_DIGITS or not text.isdigit():
        return None
    return int(text)


class RecoveryCodeSet(ThrottlingMixin, Device):
    """The user's current recovery codes, as one django-otp device."""

    id = models.BigAutoField(primary_key=True)

    class Meta:
        verbose_name = "recovery code set"

    def __str__(self) -> str:
        return f"Recovery codes {self.pk}"

    def get_throttle_factor(self) -> int:
        return _throttle_factor()

    def verify_token(self, token: Any) -> bool:
        from neonpro.accounts.mfa import recovery_code_matches

        allowed, _ = self.verify_is_allowed()
        if not allowed:
            return False
        for code in self.codes.filter(used_at__isnull=True).select_for_update():
            if recovery_code_matches(code, str(token)):
                code.used_at = timezone.now()
                code.save(update_fields=["used_at"])
                self.throttle_reset(commit=True)
                return True
        self.throttle_increment(commit=True)
        return False


class RecoveryCode(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device = models.ForeignKey(RecoveryCodeSet, on_delete=models.CASCADE, related_name="codes")
    key_id = models.IntegerField(help_text="The audit MAC key the digest was made under.")
    digest = models.BinaryField(max_length=32, help_text="HMAC of the code; the code itself is never stored.")
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "recovery code"

    def __str__(self) -> str:
        return f"Recovery code {self.pk}"

"""Per-subject (per-patient) keys, for files and documents — and crypto-shredding.

Guarantees: each subject gets its own random 256-bit key, stored only wrapped by the master
key, so destroying that wrapped key makes exactly that subject's files unreadable and
nobody else's (a key *derived* from a shared secret could not be erased on its own). Values
are envelope-v1-shaped with key id 0 ("the subject's key") and the subject's UUID plus the
caller's context in the associated data, so a blob moved to another subject fails.
"""

from __future__ import annotations

import os
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import IntegrityError, transaction
from django.utils import timezone

from keys import envelope
from keys.exceptions import AuthenticationError, DecryptionError, KeysError, UnknownKeyError
from keys.models import SubjectKey
from keys.providers import get_provider, provider_for
from keys.signals import key_event

_HEADER = bytes([envelope.VERSION]) + bytes(4)  # key id 0: "this subject's key"


def _context(subject: uuid.UUID, context: bytes) -> bytes:
    return b"neonpro.subject.v1\x00" + subject.bytes + b"\x00" + context


def _key_for(subject: uuid.UUID, *, create: bool) -> AESGCM:
    row = SubjectKey.objects.filter(pk=subject).first()
    if row is None:
        if not create:
            raise UnknownKeyError(f"subject {subject} has no key")
        row = _create(subject)
    if row.shredded_at is not None:
        raise UnknownKeyError(f"the key of subject {subject} was destroyed (crypto-shredded)")
    secret = provider_for(row.wrapping_key_id).unwrap_key(
        bytes(row.wrapped_key), key_id=row.wrapping_key_id, context=row.wrap_context()
    )
    return AESGCM(secret)


def _create(subject: uuid.UUID) -> SubjectKey:
    provider = get_provider()
    row = SubjectKey(subject=subject, wrapped_key=b"", wrapping_key_id="", provider=provider.name)
    wrapped = provider.wrap_key(os.urandom(32), context=row.wrap_context())
    row.wrapped_key, row.wrapping_key_id = wrapped.blob, wrapped.key_id
    try:
        with transaction.atomic():
            row.save(force_insert=True)
    except IntegrityError:
        return SubjectKey.objects.get(pk=subject)  # created concurrently
    key_event.send(__name__, action="subject_key.create", outcome="success", key_id=None, purpose="file", details={})
    return row


def encrypt_for_subject(subject: uuid.UUID, plaintext: bytes, *, context: bytes) -> bytes:
    """Encrypt under the subject's own key (created on first use)."""
    return envelope.seal(_key_for(subject, create=True), _HEADER, plaintext, _context(subject, context))


def decrypt_for_subject(subject: uuid.UUID, token: bytes, *, context: bytes) -> bytes:
    """Raises DecryptionError (UnknownKeyError once the subject's key is shredded)."""
    token = bytes(token)
    if envelope.read_key_id(token) != 0:
        raise DecryptionError("not a subject-key envelope")
    aead = _key_for(subject, create=False)
    try:
        return aead.decrypt(
            token[envelope.HEADER_SIZE : 17], token[17:], token[: envelope.HEADER_SIZE] + _context(subject, context)
        )
    except InvalidTag:
        raise AuthenticationError(
            "authentication failed: altered, or moved from another subject or context", where=f"subject {subject}"
        ) from None


def shred_subject(subject: uuid.UUID) -> bool:
    """Destroy a subject's key: everything encrypted under it becomes unreadable. Returns
    False when the subject had no key. The row stays (wrapped material erased) as evidence."""
    row = SubjectKey.objects.filter(pk=subject, shredded_at__isnull=True).first()
    if row is None:
        if SubjectKey.objects.filter(pk=subject).exists():
            raise KeysError(f"the key of subject {subject} was already destroyed")
        return False
    row.wrapped_key, row.shredded_at = b"", timezone.now()
    row.save(update_fields=["wrapped_key", "shredded_at"])
    key_event.send(
        __name__,
        action="subject_key.shred",
        outcome="success",
        key_id=None,
        purpose="file",
        details={"subject": subject},
    )
    return True

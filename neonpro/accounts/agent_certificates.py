"""Agents' client certificates: which verified certificate is which agent.

The TLS terminator (nginx, ``ssl_verify_client on``) checks the chain to the internal CA and
passes the verified certificate on the trusted hop (``neonpro.accounts.agent_auth``). Here a
certificate maps to an agent by its SHA-256 fingerprint (of the DER bytes), registered by an
operator (``manage.py agents certificate``). ``check_certificate`` refuses, with a reason for
the audit log only: an unparsable certificate, an unregistered one, a revoked one, one outside
its validity period (checked here too, whatever the terminator did), a disabled agent's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from django.db import IntegrityError, transaction
from django.utils import timezone

from keys import crypto
from neonpro.accounts.agent_models import AgentCertificate
from neonpro.audit.services import record_event

RESOURCE = "accounts.agentcertificate"


class CertificateRefused(Exception):  # noqa: N818 - the name says what happened
    """A presented certificate does not authenticate; ``reason`` is for the audit log only."""

    def __init__(self, reason: str, fingerprint: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fingerprint = fingerprint


@dataclass(frozen=True)
class CheckedCertificate:
    certificate: AgentCertificate
    scopes: tuple[str, ...]


def load_pem(pem: bytes) -> x509.Certificate:
    """The certificate in ``pem``; ValueError when it is not one PEM certificate."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise ValueError("not a PEM certificate (-----BEGIN CERTIFICATE----- ...)") from None


def fingerprint_of(certificate: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lowercase hex (what ``openssl x509 -fingerprint -sha256`` shows)."""
    return crypto.fingerprint(certificate.public_bytes(Encoding.DER))


def register_certificate(
    agent: object, pem: bytes, *, operator: str = "", now: dt.datetime | None = None
) -> AgentCertificate:
    """Map the client certificate in ``pem`` to ``agent`` (audited).

    Raises ValueError when it is not a certificate, is a CA certificate, is not valid now, or
    is registered already (to any agent).
    """
    from neonpro.accounts.agents import profile_of

    profile = profile_of(agent)
    certificate = load_pem(pem)
    now = now or timezone.now()
    try:
        is_ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if is_ca:
        raise ValueError("this is a CA certificate: register the agent's own client certificate")
    if not certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc:
        raise ValueError(
            f"this certificate is valid from {certificate.not_valid_before_utc:%Y-%m-%d} "
            f"to {certificate.not_valid_after_utc:%Y-%m-%d}, not now"
        )
    fingerprint = fingerprint_of(certificate)
    try:
        with transaction.atomic():
            row = AgentCertificate.objects.create(
                agent=profile.user,
                fingerprint=fingerprint,
                subject=certificate.subject.rfc4514_string()[:500],
                serial=format(certificate.serial_number, "x"),
                not_before=certificate.not_valid_before_utc,
                not_after=certificate.not_valid_after_utc,
                created_by_operator=operator,
            )
            record_event(
                "agent.certificate_add",
                resource_type=RESOURCE,
                resource_id=row.pk,
                details={"agent": profile.user_id, "fingerprint": fingerprint},
            )
    except IntegrityError:
        raise ValueError(f"the certificate {fingerprint} is registered already") from None
    return row


def revoke_certificate(fingerprint: str, *, now: dt.datetime | None = None) -> AgentCertificate:
    """Stop accepting a certificate (audited); the fingerprint as hex, with or without colons.
    Raises ValueError for an unknown fingerprint and for a certificate revoked already."""
    wanted = fingerprint.strip().replace(":", "").lower()
    with transaction.atomic():
        row = AgentCertificate.objects.select_for_update().filter(fingerprint=wanted).first()
        if row is None:
            raise ValueError("no registered certificate has that SHA-256 fingerprint")
        if row.revoked_at is not None:
            raise ValueError(f"certificate {row.fingerprint} was revoked already")
        row.revoked_at = now or timezone.now()
        row.save(update_fields=["revoked_at"])
        record_event(
            "agent.certificate_revoke",
            resource_type=RESOURCE,
            resource_id=row.pk,
            details={"agent": row.agent_id, "fingerprint": row.fingerprint},
        )
    return row


def check_certificate(pem: bytes, *, now: dt.datetime | None = None) -> CheckedCertificate:
    """The registered certificate ``pem`` is, and the agent's scopes; raises CertificateRefused."""
    try:
        certificate = load_pem(pem)
    except ValueError:
        raise CertificateRefused("malformed") from None
    fingerprint = fingerprint_of(certificate)
    row = AgentCertificate.objects.select_related("agent", "agent__agent_profile").filter(fingerprint=fingerprint)
    found = row.first()
    if found is None:
        raise CertificateRefused("unknown", fingerprint)
    if found.revoked_at is not None:
        raise CertificateRefused("revoked", fingerprint)
    if not found.is_usable(now or timezone.now()):
        raise CertificateRefused("expired", fingerprint)
    agent = found.agent
    profile = getattr(agent, "agent_profile", None)
    if not agent.is_active or agent.role != "agent" or profile is None or profile.disabled:
        raise CertificateRefused("disabled", fingerprint)
    return CheckedCertificate(found, tuple(profile.scopes))

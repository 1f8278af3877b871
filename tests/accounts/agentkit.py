"""Helpers of the agents' tests: agents made as an operator makes them, tokens, certificates.

Certificates are real ones made here with ``cryptography``: a CA, and client certificates it
signs (valid, expired, not yet valid), as the transport work's internal CA will issue them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from neonpro.accounts import agent_tokens
from neonpro.security import scopes
from patients import agents as patient_agents


def make_agent(
    name: str,
    agent_scopes: Sequence[str] = scopes.SCOPES,
    *,
    patients: Sequence[Any] = (),
    care_team_of: Any = None,
) -> Any:
    """An agent created as ``manage.py agents create`` does; returns its account."""
    profile, _ = patient_agents.create_agent(
        name,
        agent_scopes=list(agent_scopes),
        patients=[str(getattr(p, "pk", p)) for p in patients],
        care_team_of=getattr(care_team_of, "username", care_team_of),
    )
    return profile.user


def token_for(agent: Any, **options: Any) -> str:
    return agent_tokens.issue_token(agent, **options)[1]


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@dataclass
class CA:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def issue(
        self,
        common_name: str,
        *,
        not_before: dt.datetime | None = None,
        days: int = 30,
        ca: bool = False,
    ) -> x509.Certificate:
        start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        return builder.sign(self.key, hashes.SHA256())


def make_ca() -> CA:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "NeonPro test agents CA")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return CA(key, certificate)


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.PEM)


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def proxy_headers(certificate: x509.Certificate | None, verify: str = "SUCCESS") -> dict[str, str]:
    """What nginx sends: ``$ssl_client_escaped_cert`` and ``$ssl_client_verify``."""
    headers = {"HTTP_X_SSL_CLIENT_VERIFY": verify}
    if certificate is not None:
        headers["HTTP_X_SSL_CLIENT_CERT"] = quote(pem(certificate).decode(), safe="")
    return headers


def items(response: Any) -> list[Any]:
    """The rows of a list response: a JSON list today, ``{"results": [...]}`` if the API pages so."""
    body = response.json()
    return body if isinstance(body, list) else body["results"]

"""Self-signed development certificate for `make run`.

Guarantees: ECDSA P-256 key, SHA-256 signature, SAN for localhost/127.0.0.1/::1, subject and
authority key identifiers (so path validators accept it as its own trust anchor), at most 90
days of validity (Mozilla "modern" profile); the private key file is created 0600 and the
pair is regenerated when it is missing, unreadable, within 7 days of expiry, or made by an
older version without key identifiers.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=90)
RENEW_BEFORE = dt.timedelta(days=7)


def ensure_dev_certificate(directory: Path, *, now: dt.datetime | None = None) -> tuple[Path, Path]:
    """Return (cert_path, key_path), creating or renewing the pair when needed."""
    now = now or dt.datetime.now(dt.UTC)
    cert_path, key_path = directory / "dev-cert.pem", directory / "dev-key.pem"
    if cert_path.exists() and key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            if cert.not_valid_after_utc - now > RENEW_BEFORE:
                return cert_path, key_path
        except (ValueError, x509.ExtensionNotFound):
            pass
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, now)
    tmp_key = key_path.with_suffix(".tmp")
    tmp_key.unlink(missing_ok=True)
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    os.replace(tmp_key, key_path)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _self_signed(key: ec.EllipticCurvePrivateKey, now: dt.datetime) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "NeonPro development"),
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
        ]
    )
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now - dt.timedelta(minutes=5) + VALIDITY)
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )

"""The development certificate of `make run`: short-lived ECDSA P-256, its own trust anchor, renewed when due."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from certificates.devcert import RENEW_BEFORE, VALIDITY, ensure_dev_certificate


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_a_new_pair_is_p256_with_key_identifiers_and_a_private_key_file(tmp_path: Path) -> None:
    cert_path, key_path = ensure_dev_certificate(tmp_path / "tls")

    cert = _load(cert_path)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= VALIDITY
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest  # self-issued: it names itself as the authority
    assert key_path.stat().st_mode & 0o777 == 0o600
    # A client that trusts exactly this certificate accepts it (what --cacert / a pin does).
    ssl.create_default_context(cafile=str(cert_path))


def test_the_pair_is_kept_until_renewal_is_due(tmp_path: Path) -> None:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    first = _load(ensure_dev_certificate(tmp_path, now=now)[0])

    kept = _load(ensure_dev_certificate(tmp_path, now=now + VALIDITY - RENEW_BEFORE - dt.timedelta(days=1))[0])
    renewed = _load(ensure_dev_certificate(tmp_path, now=now + VALIDITY - RENEW_BEFORE + dt.timedelta(days=1))[0])

    assert kept.serial_number == first.serial_number
    assert renewed.serial_number != first.serial_number


def test_a_certificate_without_key_identifiers_is_replaced(tmp_path: Path) -> None:
    cert_path, _ = ensure_dev_certificate(tmp_path)
    old = _load(cert_path)
    # What versions before key identifiers wrote: the same certificate minus those extensions.
    from cryptography.hazmat.primitives import hashes, serialization

    key = serialization.load_pem_private_key((tmp_path / "dev-key.pem").read_bytes(), password=None)
    builder = x509.CertificateBuilder().subject_name(old.subject).issuer_name(old.issuer)
    builder = builder.public_key(old.public_key()).serial_number(old.serial_number)
    builder = builder.not_valid_before(old.not_valid_before_utc).not_valid_after(old.not_valid_after_utc)
    cert_path.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))  # type: ignore[arg-type]

    replaced = _load(ensure_dev_certificate(tmp_path)[0])

    assert replaced.serial_number != old.serial_number
    replaced.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)

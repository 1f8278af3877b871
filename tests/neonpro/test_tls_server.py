"""The real `manage.py serve` listener: TLS 1.3 only, the dev certificate, and the security headers.

One server process (embedded mode: SQLite, local master key file; `server` in conftest.py) is
spoken to with the stdlib `ssl`/`http.client`, the way a browser or agent would.
"""

from __future__ import annotations

import datetime as dt
import http.client
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.neonpro.conftest import Server

# Mozilla "modern": the TLS 1.3 suites, all AEAD.
AEAD_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}


def _client_context(server: Server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.cert))


def _get(server: Server, path: str) -> tuple[http.client.HTTPResponse, str]:
    conn = http.client.HTTPSConnection("localhost", server.port, context=_client_context(server), timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def _cookie(response: http.client.HTTPResponse, name: str) -> tuple[str, dict[str, str]]:
    """The value and attributes (lower-cased names) of the Set-Cookie header for ``name``."""
    for header in response.headers.get_all("Set-Cookie") or []:
        first, *attributes = (part.strip() for part in header.split(";"))
        cookie_name, _, value = first.partition("=")
        if cookie_name == name:
            parsed = {}
            for attribute in attributes:
                key, _, attr_value = attribute.partition("=")
                parsed[key.strip().lower()] = attr_value.strip()
            return value, parsed
    pytest.fail(f"no Set-Cookie for {name}: {response.headers.get_all('Set-Cookie')}")


def test_tls13_handshake_uses_an_aead_suite(server: Server) -> None:
    context = _client_context(server)
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() == "TLSv1.3"
        suite, protocol, _bits = tls.cipher()
        assert protocol == "TLSv1.3"
        assert suite in AEAD_SUITES


def test_tls12_client_is_refused(server: Server) -> None:
    context = _client_context(server)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, pytest.raises(ssl.SSLError):
        context.wrap_socket(raw, server_hostname="localhost")


def test_served_certificate_is_ecdsa_p256_for_localhost_and_short_lived(server: Server) -> None:
    context = _client_context(server)
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert isinstance(public_key.curve, ec.SECP256R1)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    # Mozilla's "maximum certificate lifespan" counts whole days (as sslyze does).
    lifespan = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifespan.days <= 90
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) <= dt.timedelta(days=90)


def test_login_page_over_tls_carries_security_headers_and_host_cookie(server: Server) -> None:
    response, body = _get(server, "/accounts/login/")

    assert response.status == 200
    assert "Sign in" in body
    hsts = response.getheader("Strict-Transport-Security", "")
    max_age = next(int(d.split("=", 1)[1]) for d in hsts.split(";") if d.strip().startswith("max-age="))
    assert max_age >= 63072000
    assert response.getheader("Content-Security-Policy")
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert response.getheader("X-Frame-Options") == "DENY"
    assert "no-store" in response.getheader("Cache-Control", "")
    value, attributes = _cookie(response, "__Host-csrftoken")
    assert value
    assert "secure" in attributes
    assert "httponly" in attributes
    assert attributes.get("path") == "/"
    assert "domain" not in attributes


def test_admin_login_leads_to_the_two_step_sign_in_page(server: Server) -> None:
    admin, _ = _get(server, "/admin/login/")
    response, body = _get(server, "/accounts/login/?next=/admin/")

    assert admin.status == 302 and admin.headers["Location"].startswith("/accounts/login/")
    assert response.status == 200 and 'name="password"' in body


def test_plain_http_to_the_tls_port_gets_no_page(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/accounts/login/", headers={"Host": "localhost"})
        status = conn.getresponse().status
    except (http.client.HTTPException, OSError):
        return  # the TLS listener drops a connection that does not start with a ClientHello
    finally:
        conn.close()
    assert status != 200

"""The TLS configuration of every listener NeonPro starts itself: TLS 1.3 only, groups pinned.

TLS 1.3 cipher suites are all AEAD (AES-GCM, ChaCha20-Poly1305) with forward secrecy;
compression and renegotiation do not exist in 1.3. Clients asking for 1.2 or lower fail
the handshake.

Key exchange is limited to X25519, P-256 and P-384 (Mozilla "modern"). Python 3.11's ssl
cannot set a server's groups, so they come from the OpenSSL configuration file shipped
beside this module, which OpenSSL reads from ``OPENSSL_CONF`` only when it initialises:
``ensure_pinned_openssl_config`` re-executes the process with it (same PID, so signals and
the exit status stay the listener's own), and ``check_pinned_groups`` proves in that
process, by handshaking with the real server context, that exactly those groups are
accepted. A listener must not start when the check fails.
"""

from __future__ import annotations

import os
import ssl
import sys
from pathlib import Path

OPENSSL_CONFIG = Path(__file__).resolve().with_name("openssl-tls13.cnf")
# OpenSSL short names: prime256v1 is P-256 (secp256r1), secp384r1 is P-384.
PINNED_GROUPS = ("X25519", "prime256v1", "secp384r1")
# Every other group OpenSSL 3 can negotiate in TLS 1.3; each must be refused.
REFUSED_GROUPS = ("X448", "secp521r1", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192")
_HANDSHAKE_ROUNDS = 4  # ClientHello, server flight, client Finished, and one HelloRetryRequest


class TLSConfigurationError(Exception):
    """This process cannot serve with the pinned TLS configuration."""


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    context.set_alpn_protocols(["http/1.1"])
    return context


def ensure_pinned_openssl_config(subcommand: str) -> None:
    """Return if ``OPENSSL_CONF`` names ``OPENSSL_CONFIG``; otherwise re-execute this program with it.

    The re-executed program is the same command line (``sys.orig_argv``), so it arrives here
    again and returns. Raises ``TLSConfigurationError`` when this process is not
    ``<program> <subcommand> ...`` (the command was called in-process, and re-executing would
    restart the caller instead) or when the re-execution fails.
    """
    if os.environ.get("OPENSSL_CONF") == str(OPENSSL_CONFIG):
        return
    if sys.argv[1:2] != [subcommand] or not sys.executable:
        raise TLSConfigurationError(
            f"{subcommand} must run as its own process to pin TLS groups (or with OPENSSL_CONF={OPENSSL_CONFIG})"
        )
    sys.stdout.flush()
    sys.stderr.flush()
    env = {**os.environ, "OPENSSL_CONF": str(OPENSSL_CONFIG)}
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)  # noqa: S606 - our own command line
    except OSError as exc:
        raise TLSConfigurationError(f"cannot re-execute {sys.executable} with OPENSSL_CONF: {exc}") from exc


def check_pinned_groups(context: ssl.SSLContext) -> None:
    """Raise ``TLSConfigurationError`` unless ``context`` accepts exactly ``PINNED_GROUPS``."""
    accepted = accepted_groups(context)
    if accepted != set(PINNED_GROUPS):
        raise TLSConfigurationError(
            f"TLS groups are not pinned: the server accepts {sorted(accepted)}, not exactly {list(PINNED_GROUPS)}"
            f" (OpenSSL did not apply {OPENSSL_CONFIG}; OPENSSL_CONF is {os.environ.get('OPENSSL_CONF')!r})"
        )


def accepted_groups(context: ssl.SSLContext) -> set[str]:
    """The groups of ``PINNED_GROUPS`` and ``REFUSED_GROUPS`` that a handshake with ``context`` agrees on.

    Each group is tried by an in-memory handshake with a client that offers that group alone.
    Groups this OpenSSL does not know cannot be negotiated and count as refused. Raises
    ``TLSConfigurationError`` when a probe fails on the client side or does not finish.
    """
    return {group for group in (*PINNED_GROUPS, *REFUSED_GROUPS) if _accepts(context, group)}


def _accepts(server: ssl.SSLContext, group: str) -> bool:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Only the key exchange is probed: no application data is ever sent on this connection.
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        client.set_ecdh_curve(group)  # on OpenSSL 3 this sets the client's groups to this one alone
    except ValueError:
        return False  # unknown to this OpenSSL, so the server cannot negotiate it either
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(client_in, client_out, server_hostname="localhost")
    server_side = server.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(_HANDSHAKE_ROUNDS):
        try:
            client_side.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            raise TLSConfigurationError(f"cannot probe TLS group {group}: {exc}") from exc
        server_in.write(client_out.read())
        try:
            server_side.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:
            return False  # the server refused the handshake: no shared group
        else:
            return True
        client_in.write(server_out.read())
    raise TLSConfigurationError(f"the handshake probing TLS group {group} did not finish")

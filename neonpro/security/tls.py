"""The TLS configuration of every listener NeonPro starts itself: TLS 1.3 only.

TLS 1.3 cipher suites are all AEAD (AES-GCM, ChaCha20-Poly1305) with forward secrecy;
compression and renegotiation do not exist in 1.3. Clients asking for 1.2 or lower fail
the handshake.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    context.set_alpn_protocols(["http/1.1"])
    return context

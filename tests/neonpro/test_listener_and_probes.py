"""The listening socket's errors, and the TLS group probe's own failure modes."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from certificates.devcert import ensure_dev_certificate
from neonpro.security import tls
from neonpro.security.listener import PortUnavailableError, bind, public_url

BASE_DIR = Path(__file__).resolve().parents[2]


def test_bind_listens_on_a_free_port_and_names_a_taken_one() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        with pytest.raises(PortUnavailableError, match=f"port {port} on 127.0.0.1 is already in use"):
            bind("127.0.0.1", port)
    finally:
        sock.close()


def test_connections_accepted_on_the_socket_send_without_nagle_delays() -> None:
    """asyncio sets TCP_NODELAY only on sockets that say they are TCP: without it every
    response body waited ~40 ms for the client's delayed ACK of the headers (bench/api.py)."""
    import asyncio

    async def accepted_nodelay() -> int:
        sock = bind("127.0.0.1", 0)
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted = writer.get_extra_info("socket")
            seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            result = await asyncio.wait_for(seen, 10)
            writer.close()
        return result

    assert asyncio.run(accepted_nodelay()) == 1


def test_bind_to_an_address_this_host_does_not_have_says_so() -> None:
    with pytest.raises(PortUnavailableError, match=r"cannot listen on 203\.0\.113\.7:8443"):
        bind("203.0.113.7", 8443)


def test_a_privileged_port_without_privileges_says_why() -> None:
    # Ports below 1024 need privileges: drop them (the suite runs as root) in a child process.
    code = (
        "import os\n"
        "from neonpro.security.listener import PortUnavailableError, bind\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "try:\n    bind('127.0.0.1', 443)\nexcept PortUnavailableError as exc:\n    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, capture_output=True, text=True, timeout=30)

    assert "not allowed to listen on port 443" in result.stdout, result.stderr


def test_a_permission_error_on_bind_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from neonpro.security import listener

    class Refusing(socket.socket):
        def bind(self, address: object, /) -> None:
            raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(listener.socket, "socket", Refusing)

    with pytest.raises(PortUnavailableError, match="ports below 1024 need privileges"):
        bind("127.0.0.1", 80)


def test_bind_ipv6_loopback() -> None:
    sock = bind("::1", 0)
    try:
        assert sock.family == socket.AF_INET6
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "https://localhost:8443/"),
        ("::1", "https://localhost:8443/"),
        ("records.example.org", "https://records.example.org:8443/"),
    ],
)
def test_public_url(host: str, url: str) -> None:
    assert public_url(host, 8443) == url


def test_serving_in_process_is_refused_rather_than_unpinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENSSL_CONF", raising=False)
    monkeypatch.setattr(sys, "argv", ["pytest"])

    with pytest.raises(tls.TLSConfigurationError, match="must run as its own process"):
        tls.ensure_pinned_openssl_config("serve")


def test_a_failed_re_execution_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENSSL_CONF", raising=False)
    monkeypatch.setattr(sys, "argv", ["manage.py", "serve"])

    def refuse(*args: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tls.os, "execve", refuse)

    with pytest.raises(tls.TLSConfigurationError, match="cannot re-execute"):
        tls.ensure_pinned_openssl_config("serve")


@pytest.fixture(scope="module")
def server_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    cert, key = ensure_dev_certificate(tmp_path_factory.mktemp("probe"))
    return tls.server_context(cert, key)


def test_a_group_this_openssl_does_not_know_counts_as_refused(server_context: ssl.SSLContext) -> None:
    assert tls._accepts(server_context, "brainpoolP256r1tls13-not-a-group") is False


def test_a_probe_whose_client_cannot_handshake_fails_loudly(
    server_context: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    def client_context(protocol: ssl._SSLMethod) -> ssl.SSLContext:
        context = ssl.SSLContext(protocol)
        context.maximum_version = ssl.TLSVersion.TLSv1_2  # with the probe's minimum of 1.3: nothing to offer
        return context

    monkeypatch.setattr(tls, "ssl", types.SimpleNamespace(**{**vars(ssl), "SSLContext": client_context}))

    with pytest.raises(tls.TLSConfigurationError, match="cannot probe TLS group X25519"):
        tls._accepts(server_context, "X25519")


def test_a_handshake_that_does_not_finish_is_an_error(
    server_context: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tls, "_HANDSHAKE_ROUNDS", 1)

    with pytest.raises(tls.TLSConfigurationError, match="did not finish"):
        tls._accepts(server_context, "X25519")

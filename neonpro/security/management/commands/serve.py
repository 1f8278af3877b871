"""``manage.py serve``: the ASGI app over HTTPS (TLS 1.3 only, groups pinned) with uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from certificates.devcert import ensure_dev_certificate
from neonpro.security.listener import AnnouncingServer, PortUnavailableError, bind, public_url
from neonpro.security.tls import (
    TLSConfigurationError,
    check_pinned_groups,
    ensure_pinned_openssl_config,
    server_context,
)


class Command(BaseCommand):
    help = "Serve NeonPro over HTTPS with TLS 1.3 only."
    requires_system_checks: list[str] = []
    # ``banner``: lines to print once listening (``demo run`` passes how to sign in).
    stealth_options = ("banner",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8443)

    def handle(self, *args: Any, host: str, port: int, banner: list[str] | None = None, **options: Any) -> None:
        import uvicorn

        try:
            ensure_pinned_openssl_config("serve")  # OpenSSL reads OPENSSL_CONF at start-up: may re-execute
        except TLSConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        self.check(databases=["default"])
        # Refuse to serve as a role that bypasses row-level security (superuser, BYPASSRLS, owner).
        self.check(databases=["default"], tags=["database"], include_deployment_checks=True)
        if settings.NEONPRO_TLS_CERT and settings.NEONPRO_TLS_KEY:
            cert, key = Path(settings.NEONPRO_TLS_CERT), Path(settings.NEONPRO_TLS_KEY)
        else:
            cert, key = ensure_dev_certificate(Path(settings.NEONPRO_TLS_DIR))
        config = uvicorn.Config(
            "neonpro.asgi:application",
            host=host,
            port=port,
            ssl_certfile=str(cert),
            ssl_keyfile=str(key),
            proxy_headers=False,
            server_header=False,
            lifespan="off",
            log_level="info",
        )
        config.load()
        config.ssl = server_context(cert, key)  # replace uvicorn's context: TLS 1.3 only
        try:
            check_pinned_groups(config.ssl)  # refuse to serve with OpenSSL's default groups
        except TLSConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        try:
            sock = bind(host, port)
        except PortUnavailableError as exc:
            raise CommandError(str(exc)) from None

        def announce() -> None:
            self.stdout.write(f"NeonPro is listening on {public_url(host, port)} (TLS 1.3). Stop it with Ctrl-C.")
            for line in banner or []:
                self.stdout.write(line)
            self.stdout.flush()

        AnnouncingServer(config, on_listening=announce).run(sockets=[sock])

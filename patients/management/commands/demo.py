"""``manage.py demo seed|reset-passwords|run``: the demo data of the embedded mode (`make run`)."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from neonpro.audit.operator import add_operator_arguments, operator_from_options
from neonpro.security.listener import public_url
from neonpro.security.tls import TLSConfigurationError, ensure_pinned_openssl_config
from patients.demo import DEMO_PATIENTS, DEMO_USERS, Credential, reset_demo_passwords, seed_demo

RESET_HINT = "python manage.py demo reset-passwords"


def credentials_table(credentials: list[Credential]) -> list[str]:
    """Username, role, password and authenticator secret (base32: add it to an authenticator
    app, e.g. "enter a setup key", time-based), one account a line."""
    return [f"  {c.username:<12} {c.role:<10} {c.password:<18} {c.totp_secret}" for c in credentials]


def sign_in_banner(host: str, port: int, credentials: list[Credential], tls_dir: str) -> list[str]:
    url = public_url(host, port)
    lines = [
        f"  Sign in       {url}accounts/login/",
        f"  Clinicians    {url}patients/   (dr.house, dr.grey)",
        f"  Patients      {url}portal/   (the demo patient)",
        f"  Django admin  {url}admin/   (user admin; security dashboard: {url}admin/security/dashboard/)",
        f"  JSON API      {url}api/v1/   (README: quick start with curl)",
        f"  Certificate   {tls_dir}/dev-cert.pem (self-signed: your browser will warn once)",
    ]
    if credentials:
        lines.append("Demo accounts (passwords shown only now, each with its authenticator secret: add the secret")
        lines.append("to an authenticator app as a time-based setup key, then sign in with the password and its code):")
        lines += credentials_table(credentials)
    else:
        names = ", ".join(f"{username} ({role})" for username, role, _ in DEMO_USERS)
        lines.append(f"Demo accounts: {names}.")
        lines.append(f"Their passwords were shown on the first start; new ones: `{RESET_HINT}`.")
    return lines


class Command(BaseCommand):
    help = (
        "Demo data: `seed` creates it (once), `reset-passwords` gives the demo accounts new passwords, "
        "`run` seeds if needed and serves, ending its start-up output with how to sign in."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["seed", "reset-passwords", "run"])
        parser.add_argument("--host", default="127.0.0.1", help="run: address to listen on")
        parser.add_argument("--port", type=int, default=8443, help="run: port to listen on")
        add_operator_arguments(parser)

    def handle(self, *args: Any, action: str, host: str, port: int, **options: Any) -> None:
        with operator_from_options(options):
            self._handle(action, host, port)

    def _handle(self, action: str, host: str, port: int) -> None:
        from django.conf import settings

        if settings.PRODUCTION:
            raise CommandError(
                "demo data is for the embedded mode: refused with NEONPRO_ENV=production "
                "(it would create or reset accounts named admin, dr.house, ...)"
            )
        if action == "run":
            return self._run(host, port)  # serves until stopped
        if action == "seed":
            credentials = seed_demo()
            if not credentials:
                self.stdout.write(
                    f"Demo data already present (passwords were shown when it was created; new ones: `{RESET_HINT}`)."
                )
                return
            self.stdout.write(
                f"Created {len(DEMO_PATIENTS)} demo patients and these accounts "
                "(passwords and authenticator secrets shown only now):"
            )
        else:
            credentials = reset_demo_passwords()
            if not credentials:
                raise CommandError("no demo accounts here: create them with `python manage.py demo seed`")
            self.stdout.write(
                "New passwords and authenticator secrets for the demo accounts "
                "(shown only now; the old ones no longer work):"
            )
        for line in credentials_table(credentials):
            self.stdout.write(line)

    def _run(self, host: str, port: int) -> None:
        from django.conf import settings

        try:
            ensure_pinned_openssl_config("demo")  # before anything else: this may re-execute the process
        except TLSConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        credentials = seed_demo()
        banner = sign_in_banner(host, port, credentials, str(settings.NEONPRO_TLS_DIR))
        try:
            call_command("serve", host=host, port=port, banner=banner)
        except CommandError:
            if credentials:  # created but never shown: show them before giving up
                self.stderr.write("The demo accounts were created; their passwords and secrets (shown only now):")
                for line in credentials_table(credentials):
                    self.stderr.write(line)
            raise

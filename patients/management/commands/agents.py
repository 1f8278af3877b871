"""``manage.py agents create|list|token|revoke-token|disable|certificate|revoke-certificate``.

Operators' tool for AI agents (docs/agents.md); every change is audited with the operator
(``--operator``/``--reason``/``--ticket``). A token is printed once, by ``token``, and never again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from neonpro.accounts import agent_certificates, agent_tokens, agents
from neonpro.audit.operator import add_operator_arguments, operator_from_options
from neonpro.security.context import system_context
from neonpro.security.scopes import SCOPES
from patients import agents as patient_agents


class Command(BaseCommand):
    help = "Create and manage AI agents: their scopes, patients, tokens and client certificates."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="A new agent with its scopes and patient set.")
        create.add_argument("name", help="The agent's account name (letters, digits, @ . + - _).")
        create.add_argument("--scopes", required=True, help=f"Comma-separated, of: {', '.join(SCOPES)}.")
        create.add_argument("--patients", default="", help="Comma-separated patient ids or MRNs.")
        create.add_argument("--care-team-of", default=None, help="A clinician's username: their active care team.")
        create.add_argument("--description", default="", help="What the agent is for (no patient data).")
        sub.add_parser("list", help="Every agent: scopes, patient set, live credentials.")
        token = sub.add_parser("token", help="Issue an API token (printed once).")
        token.add_argument("name")
        token.add_argument("--expires-days", type=int, default=agent_tokens.DEFAULT_EXPIRES_DAYS)
        token.add_argument("--scopes", default=None, help="A subset of the agent's scopes (default: all).")
        revoke = sub.add_parser("revoke-token", help="Revoke a token by its prefix (the part after npa_).")
        revoke.add_argument("prefix")
        disable = sub.add_parser("disable", help="Disable an agent: its tokens and certificates stop working.")
        disable.add_argument("name")
        certificate = sub.add_parser("certificate", help="Map a client certificate (PEM) to an agent.")
        certificate.add_argument("name")
        certificate.add_argument("--pem", type=Path, required=True, help="The agent's client certificate file.")
        uncertify = sub.add_parser("revoke-certificate", help="Stop accepting a certificate (SHA-256 fingerprint).")
        uncertify.add_argument("fingerprint")
        add_operator_arguments(parser)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            with operator_from_options(options) as operator, system_context(f"agents {action} (command line)"):
                getattr(self, "_" + action.replace("-", "_"))(operator.name, options)
        except ValueError as exc:
            raise CommandError(str(exc)) from None

    def _create(self, operator: str, options: dict[str, Any]) -> None:
        profile, rows = patient_agents.create_agent(
            options["name"],
            agent_scopes=options["scopes"],
            patients=options["patients"].split(","),
            care_team_of=options["care_team_of"],
            description=options["description"],
            operator=operator,
        )
        explicit = sum(1 for row in rows if row.patient_id)
        team = " and the care team of " + options["care_team_of"] if options["care_team_of"] else ""
        self.stdout.write(
            f"Agent {profile.user.username} ({profile.user_id}) created with {', '.join(profile.scopes)}, "
            f"for {explicit} patient(s){team}. Issue it a token: manage.py agents token {profile.user.username}"
        )

    def _list(self, operator: str, options: dict[str, Any]) -> None:
        summaries = patient_agents.list_agents()
        if not summaries:
            self.stdout.write("No agents.")
        for s in summaries:
            state = "DISABLED" if s.disabled else "active"
            teams = f" + care team of {', '.join(s.care_team_of)}" if s.care_team_of else ""
            self.stdout.write(
                f"{s.name:<24} {state:<8} {','.join(s.scopes):<40} patients: {s.patients}{teams}; "
                f"tokens: {s.active_tokens}; certificates: {s.certificates}"
            )

    def _token(self, operator: str, options: dict[str, Any]) -> None:
        agent = agents.agent_named(options["name"])
        wanted = options["scopes"].split(",") if options["scopes"] else None
        token, raw = agent_tokens.issue_token(
            agent, expires_days=options["expires_days"], token_scopes=wanted, operator=operator
        )
        self.stdout.write(
            f"API token {token.prefix} for {agent.username}, scopes {', '.join(token.scopes)}, "
            f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC. It is shown once; store it now:\n\n{raw}\n"
        )

    def _revoke_token(self, operator: str, options: dict[str, Any]) -> None:
        token = agent_tokens.revoke_token(options["prefix"])
        self.stdout.write(f"API token {token.prefix} revoked.")

    def _disable(self, operator: str, options: dict[str, Any]) -> None:
        agents.disable_agent(agents.agent_named(options["name"]))
        self.stdout.write(f"Agent {options['name']} disabled; its tokens are revoked.")

    def _certificate(self, operator: str, options: dict[str, Any]) -> None:
        agent = agents.agent_named(options["name"])
        try:
            pem = options["pem"].read_bytes()
        except OSError as exc:
            raise ValueError(f"--pem {options['pem']}: {exc.strerror}") from None
        row = agent_certificates.register_certificate(agent, pem, operator=operator)
        self.stdout.write(
            f"Certificate {row.fingerprint} ({row.subject}, valid until {row.not_after:%Y-%m-%d}) "
            f"now identifies {agent.username}."
        )

    def _revoke_certificate(self, operator: str, options: dict[str, Any]) -> None:
        row = agent_certificates.revoke_certificate(options["fingerprint"])
        self.stdout.write(f"Certificate {row.fingerprint} revoked.")

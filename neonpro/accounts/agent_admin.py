"""Agents in the admin: list them, disable them, revoke their tokens and certificates.

Agents are created, and their tokens issued, by an operator with ``manage.py agents`` (a token
is shown once, on the operator's terminal). The admin shows every credential by its public
reference only (token prefix, certificate fingerprint): never a token, never its digest. Each
action goes through the same audited service as the command; nothing here is edited by hand.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from neonpro.accounts import agent_certificates, agent_tokens, agents
from neonpro.accounts.agent_models import AgentCertificate, AgentProfile, ApiToken

TOKEN_FIELDS = ("prefix", "agent", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at", "last_used_ip")
CERTIFICATE_FIELDS = (
    "fingerprint",
    "agent",
    "subject",
    "serial",
    "not_before",
    "not_after",
    "created_at",
    "revoked_at",
)


class _ActionsOnly(admin.ModelAdmin):  # type: ignore[type-arg]
    """Viewable and acted on through the actions; never added, edited or deleted as rows."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return list(self.fields or ())

    def _each(self, request: HttpRequest, queryset: QuerySet[Any], act: Any, done: str) -> None:
        count = 0
        for obj in queryset:
            try:
                act(obj)
                count += 1
            except ValueError as exc:
                self.message_user(request, f"{obj}: {exc}", messages.WARNING)
        self.message_user(request, f"{count} {done}.", messages.SUCCESS)


def _state(revoked_at: Any, expires_at: Any) -> str:
    if revoked_at is not None:
        return f"revoked {revoked_at:%Y-%m-%d}"
    return f"{'expired' if expires_at <= timezone.now() else 'expires'} {expires_at:%Y-%m-%d}"


@admin.register(AgentProfile)
class AgentProfileAdmin(_ActionsOnly):
    list_display = ("name", "scopes", "disabled_at", "created_at", "created_by_operator")
    list_filter = ("disabled_at",)
    fields = (
        "user",
        "scopes",
        "description",
        "created_at",
        "created_by",
        "created_by_operator",
        "disabled_at",
        "tokens",
        "certificates",
    )
    actions = ["disable"]
    ordering = ("user__username",)

    @admin.display(description="name", ordering="user__username")
    def name(self, obj: AgentProfile) -> str:
        return obj.user.username

    @admin.display(description="API tokens (prefix: state)")
    def tokens(self, obj: AgentProfile) -> str:
        rows = ApiToken.objects.filter(agent_id=obj.user_id).order_by("-created_at")
        return "; ".join(f"{t.prefix}: {_state(t.revoked_at, t.expires_at)}" for t in rows) or "none"

    @admin.display(description="client certificates (fingerprint: state)")
    def certificates(self, obj: AgentProfile) -> str:
        rows = AgentCertificate.objects.filter(agent_id=obj.user_id).order_by("-created_at")
        return "; ".join(f"{c.fingerprint}: {_state(c.revoked_at, c.not_after)}" for c in rows) or "none"

    @admin.action(description="Disable the selected agents (revokes their tokens)", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[AgentProfile]) -> None:
        self._each(request, queryset, lambda profile: agents.disable_agent(profile.user), "agent(s) disabled")


@admin.register(ApiToken)
class ApiTokenAdmin(_ActionsOnly):
    list_display = ("prefix", "agent", "expires_at", "revoked_at", "last_used_at", "last_used_ip")
    list_filter = ("revoked_at",)
    fields = TOKEN_FIELDS
    search_fields = ("prefix",)
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        self._each(request, queryset, lambda token: agent_tokens.revoke_token(token.prefix), "token(s) revoked")


@admin.register(AgentCertificate)
class AgentCertificateAdmin(_ActionsOnly):
    list_display = ("fingerprint", "agent", "not_after", "revoked_at")
    list_filter = ("revoked_at",)
    fields = CERTIFICATE_FIELDS
    search_fields = ("fingerprint",)
    actions = ["revoke"]

    @admin.action(description="Revoke the selected certificates", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[AgentCertificate]) -> None:
        self._each(
            request,
            queryset,
            lambda row: agent_certificates.revoke_certificate(row.fingerprint),
            "certificate(s) revoked",
        )

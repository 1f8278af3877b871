"""The audit log in the admin: read-only, filterable, never editable; keyset pages, newest first.

Actors are shown by username (``neonpro.audit.actors``: never a patient's), and the search
box takes a username — resolved to the account's id here, then matched against
``actor_id`` along its index — or an id (actor, resource, patient or request). Hashes are
shown as hex.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from neonpro.audit.actors import actor_id_for_username, actor_labels
from neonpro.audit.models import AuditEvent
from neonpro.security.admin_mixins import ReadOnlyAdminMixin
from neonpro.security.admin_pages import KeysetChangeList, KeysetModelAdmin, recent_values_filter

ID_FIELDS = ("actor_id", "resource_id", "patient_id", "request_id")


class AuditEventChangeList(KeysetChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        labels = actor_labels(event.actor_id for event in self.result_list)
        for event in self.result_list:
            event.actor_label = labels[event.actor_id]  # one query for the page, not one per row


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, KeysetModelAdmin):
    list_display = ("id", "occurred_at", "action", "outcome", "actor", "actor_role", "resource_type", "resource_id")
    list_filter = (
        "outcome",
        recent_values_filter("action", "action"),
        recent_values_filter("actor_role", "actor role"),
    )
    search_fields = ID_FIELDS  # the box is shown; get_search_results decides what a term matches
    search_help_text = "A username (the actor's), or an id: of the actor, the resource, the patient or the request."
    fields = (
        "id",
        "occurred_at",
        "actor",
        "actor_id",
        "actor_role",
        "action",
        "resource_type",
        "resource_id",
        "patient_id",
        "outcome",
        "purpose",
        "source_ip",
        "user_agent_hash",
        "request_id",
        "details",
        "prev_hash_hex",
        "hash_hex",
        "key_id",
    )
    readonly_fields = fields
    ordering = keyset_order = ("-id",)  # newest first, along the primary key

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[AuditEventChangeList]:
        return AuditEventChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AuditEvent], search_term: str
    ) -> tuple[QuerySet[AuditEvent], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            value = uuid.UUID(term)
        except ValueError:
            actor_id = actor_id_for_username(term)
            return (queryset.filter(actor_id=actor_id) if actor_id else queryset.none()), False
        # Exact matches (Django's "=field" search would compare the uuids' text, past every index).
        return queryset.filter(Q.create([(field, value) for field in ID_FIELDS], connector=Q.OR)), False

    @admin.display(description="Actor")
    def actor(self, event: AuditEvent) -> str:
        label = getattr(event, "actor_label", None)
        return label if label is not None else actor_labels([event.actor_id])[event.actor_id]

    @admin.display(description="Previous hash")
    def prev_hash_hex(self, event: AuditEvent) -> str:
        return bytes(event.prev_hash).hex()

    @admin.display(description="Hash")
    def hash_hex(self, event: AuditEvent) -> str:
        return bytes(event.hash).hex()

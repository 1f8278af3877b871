"""``GET /api/v1/sessions/`` and ``DELETE /api/v1/sessions/<id>/``: the caller's own browser sessions.

Only for callers signed in with a session (a token client has no sessions to manage); another
user's session id, or one that has ended, is a 404. Ending the current session signs out.
No pagination: a user has at most ``NEONPRO_SESSION_MAX_PER_USER`` sessions.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import logout
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from neonpro.accounts.session_models import UserSession
from neonpro.accounts.session_services import end_own_session, live_sessions_of


class IsSessionAuthenticated(BasePermission):
    message = "Sessions are managed from a signed-in browser session, not with a token."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.successful_authenticator, SessionAuthentication)


class UserSessionSerializer(serializers.ModelSerializer[UserSession]):
    current = serializers.SerializerMethodField(help_text="Whether this is the session making the request.")

    class Meta:
        model = UserSession
        fields = (
            "id",
            "created_at",
            "last_seen_at",
            "expires_at",
            "idle_expires_at",
            "ip_address",
            "user_agent",
            "current",
        )
        read_only_fields = fields

    def get_current(self, obj: UserSession) -> bool:
        return bool(obj.pk == self.context["current"])


class SessionListView(APIView):
    permission_classes = [IsAuthenticated, IsSessionAuthenticated]
    serializer_class = UserSessionSerializer

    @extend_schema(
        operation_id="sessions_list",
        summary="The caller's own live browser sessions",
        responses={200: UserSessionSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        context = {"current": request.session.public_id}  # type: ignore[attr-defined]
        rows = live_sessions_of(request.user)  # type: ignore[arg-type]
        return Response(UserSessionSerializer(rows, many=True, context=context).data)


class SessionDetailView(APIView):
    permission_classes = [IsAuthenticated, IsSessionAuthenticated]
    serializer_class = UserSessionSerializer

    @extend_schema(
        operation_id="sessions_end",
        summary="End one of the caller's sessions (the current one: sign out)",
        responses={204: None},
    )
    def delete(self, request: Request, pk: uuid.UUID) -> Response:
        if pk == request.session.public_id:  # type: ignore[attr-defined]
            logout(request._request)  # this session: signing out
            return Response(status=status.HTTP_204_NO_CONTENT)
        try:
            end_own_session(request.user, pk)  # type: ignore[arg-type]
        except UserSession.DoesNotExist:
            raise NotFound("No such session.") from None
        return Response(status=status.HTTP_204_NO_CONTENT)

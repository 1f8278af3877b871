"""``GET /api/v1/me/``: who the caller is, as the server sees them (no PHI: an id and a role).

For clients and agents to check their session or credentials before real work, and the
cheapest authenticated request there is (bench/load.py compares the clinical mix with it).
"""

from __future__ import annotations

from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from neonpro.security.api import identity_of


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        identity = identity_of(request)
        return Response({"id": str(identity.user_id), "role": identity.role})

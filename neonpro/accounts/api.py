"""``GET /api/v1/me/``: who the caller is, as the server sees them, and where to start.

For clients and agents to check their session or credentials before real work, and the
cheapest authenticated request there is (bench/load.py compares the clinical mix with it).
It names the caller (their display name: their own name, never anyone else's) and links the
resources their role works with; it reads no patient data (a patient's own patient id comes
with the sign-in identity).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from neonpro.accounts.models import User
from neonpro.accounts.people import display_name
from neonpro.security.api import identity_of
from neonpro.security.context import Identity


class MeSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    role = serializers.ChoiceField(choices=User.Role.choices)
    display_name = serializers.CharField(help_text="The account's full name (or its username when it has none).")
    patient = serializers.UUIDField(allow_null=True, help_text="A patient's own patient id; null for other roles.")
    links = serializers.DictField(
        child=serializers.URLField(), help_text="Where the caller's role starts: resource name -> URL."
    )


# Per role: resource name -> (URL name, whether it takes the caller's patient id).
LINKS: dict[str, dict[str, tuple[str, bool]]] = {
    "patient": {
        "patient": ("patient-detail", True),
        "records": ("patient-records", True),
        "appointments": ("appointment-list", False),
        "clinicians": ("patient-clinicians", True),
        "export": ("patient-export", True),
    },
    "clinician": {
        "patients": ("patient-list", False),
        "search": ("patient-search", False),
        "appointments": ("appointment-list", False),
        "emergency_access": ("emergency-access-by-identifier", False),
    },
    "agent": {"patients": ("patient-list", False), "appointments": ("appointment-list", False)},
}


def links_for(request: Request, identity: Identity) -> dict[str, str]:
    links = {"me": reverse("me", request=request), "schema": reverse("api-schema", request=request)}
    for name, (url_name, own) in LINKS.get(identity.role, {}).items():
        if own and identity.patient_id is None:
            continue  # a patient account not linked to a patient record yet
        kwargs = {"pk": identity.patient_id} if own else None
        links[name] = reverse(url_name, kwargs=kwargs, request=request)
    return links


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="me", summary="Who the caller is, and where to start", responses={200: MeSerializer})
    def get(self, request: Request) -> Response:
        identity = identity_of(request)
        body = {
            "id": identity.user_id,
            "role": identity.role,
            "display_name": display_name(request.user),
            "patient": identity.patient_id,
            "links": links_for(request, identity),
        }
        return Response(MeSerializer(body).data)

"""``GET /api/v1/``: the API's front door, linking its resources, its schema and its docs.

Public (it names URLs, never data), so that a client or an agent finds the OpenAPI schema and
the sign-in before it has credentials. Resources that take an id are given as URI templates
(RFC 6570: ``{id}``).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

TEMPLATE_ID = "00000000-0000-0000-0000-000000000000"
RESOURCES = {
    "me": "me",
    "patients": "patient-list",
    "patient_search": "patient-search",
    "patient": "patient-detail",
    "patient_records": "patient-records",
    "patient_clinicians": "patient-clinicians",
    "patient_export": "patient-export",
    "record": "record-detail",
    "appointments": "appointment-list",
    "appointment": "appointment-detail",
    "appointment_cancel": "appointment-cancel",
    "appointment_reschedule": "appointment-reschedule",
    "emergency_access": "emergency-access-by-identifier",
    "patient_emergency_access": "emergency-access",
    "emergency_access_end": "emergency-access-end",
}
TAKES_ID = {"patient", "patient_records", "patient_clinicians", "patient_export", "record", "appointment"}
TAKES_ID |= {"appointment_cancel", "appointment_reschedule", "patient_emergency_access", "emergency_access_end"}


class ApiRootSerializer(serializers.Serializer[Any]):
    version = serializers.CharField()
    resources = serializers.DictField(child=serializers.CharField(), help_text="Name -> URL or URI template.")
    schema = serializers.URLField(help_text="The OpenAPI 3 schema (YAML; ?format=json for JSON).")
    docs = serializers.URLField(help_text="The interactive documentation (Swagger UI).")
    sign_in = serializers.URLField(help_text="Where people sign in for a session.")


class ApiRootView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(operation_id="api_root", summary="The API's resources and docs", responses=ApiRootSerializer)
    def get(self, request: Request) -> Response:
        resources = {}
        for name, url_name in RESOURCES.items():
            kwargs = {"pk": TEMPLATE_ID} if name in TAKES_ID else None
            resources[name] = reverse(url_name, kwargs=kwargs, request=request).replace(TEMPLATE_ID, "{id}")
        body = {
            "version": "v1",
            "resources": resources,
            "schema": reverse("api-schema", request=request),
            "docs": reverse("api-docs", request=request),
            "sign_in": reverse("login", request=request),
        }
        return Response(ApiRootSerializer(body).data)

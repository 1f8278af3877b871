"""Patient API: thin views over patients.services."""

from __future__ import annotations

import uuid
from typing import Any

from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from neonpro.accounts.reauth import require_recent_reauth
from neonpro.accounts.sessions import rotate_session
from neonpro.security.access import get_visible
from neonpro.security.api import HasCareRole, IsClinician, identity_of
from neonpro.security.error_body import error_body
from neonpro.security.pagination import page_request, paged_response
from patients import break_glass, services
from patients.models import Patient
from patients.serializers import (
    EmergencyAccessSerializer,
    PatientCreateSerializer,
    PatientSerializer,
    PatientUpdateSerializer,
    SearchSerializer,
)


class PatientListView(APIView):
    permission_classes = [IsAuthenticated, HasCareRole]
    required_scopes = {"GET": "patients:read"}  # agents (neonpro.security.api)

    def get(self, request: Request) -> Response:
        page = services.list_patients(identity_of(request), page=page_request(request.query_params))
        return paged_response(request, page, PatientSerializer(page.items, many=True).data)

    def post(self, request: Request) -> Response:
        identity = identity_of(request)
        if identity.role != "clinician":
            raise PermissionDenied("Only clinicians register patients.")
        serializer = PatientCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        patient = services.register_patient(by=identity, **serializer.validated_data)
        return Response(PatientSerializer(patient).data, status=status.HTTP_201_CREATED)


class PatientDetailView(APIView):
    permission_classes = [IsAuthenticated, HasCareRole]
    required_scopes = {"GET": "patients:read", "PATCH": "patients:write"}

    def get(self, request: Request, pk: uuid.UUID) -> Response:
        return Response(PatientSerializer(services.get_patient(identity_of(request), pk)).data)

    def patch(self, request: Request, pk: uuid.UUID) -> Response:
        identity = identity_of(request)
        patient = get_visible(Patient, pk, action="patient.update")
        serializer = PatientUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        patient = services.update_patient(identity, patient, dict(serializer.validated_data))
        return Response(PatientSerializer(patient).data)


class PatientSearchView(APIView):
    """Search by POST body, so the searched value never appears in a URL or access log."""

    permission_classes = [IsAuthenticated, IsClinician]
    required_scopes = {"POST": "patients:read"}

    def post(self, request: Request) -> Response:
        serializer = SearchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        found = services.search_patients(identity_of(request), **serializer.validated_data)
        return Response(PatientSerializer(found, many=True).data)


class PatientExportView(APIView):
    """The patient's own bundle (patients only: see services.export_patient)."""

    permission_classes = [IsAuthenticated, HasCareRole]

    def get(self, request: Request, pk: uuid.UUID) -> Response:
        return Response(services.export_patient(identity_of(request), pk))


class EmergencyAccessView(APIView):
    permission_classes = [IsAuthenticated, IsClinician]

    def post(self, request: Request, pk: uuid.UUID) -> Response:
        require_recent_reauth(request)  # 403 reauth_required: password and code again first
        serializer = EmergencyAccessSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            grant = break_glass.request_emergency_access(
                identity_of(request), patient_id=pk, **serializer.validated_data
            )
        except break_glass.EmergencyAccessLimitError as refused:
            if refused.retry_after is not None:
                return Response(
                    error_body("break_glass_limit", str(refused)),
                    status=status.HTTP_429_TOO_MANY_REQUESTS,
                    headers={"Retry-After": str(refused.retry_after)},
                )
            until = serializers.DateTimeField().to_representation(refused.expires_at)
            message = f"{refused} It lasts until {until}."
            return Response(error_body("already_granted", message), status=status.HTTP_409_CONFLICT)
        rotate_session(request)  # elevated access: a new session id (ASVS 3.2.1)
        body: dict[str, Any] = {
            "grant": str(grant.pk),
            "patient": str(grant.patient_id),
            "expires_at": grant.expires_at,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class EmergencyAccessEndView(APIView):
    """The clinician who broke the glass ends it before it expires."""

    permission_classes = [IsAuthenticated, IsClinician]

    def post(self, request: Request, pk: uuid.UUID) -> Response:
        grant = break_glass.end_emergency_access(identity_of(request), pk)
        return Response({"grant": str(grant.pk), "ended_at": grant.ended_at})

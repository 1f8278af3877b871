"""Patient API: thin views over patients.services."""

from __future__ import annotations

import uuid
from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from neonpro.accounts.people import display_name
from neonpro.accounts.reauth import require_recent_reauth
from neonpro.accounts.sessions import rotate_session
from neonpro.security.access import get_visible
from neonpro.security.api import HasCareRole, IsClinician, identity_of
from neonpro.security.error_body import error_body
from neonpro.security.pagination import page_request, paged_response
from neonpro.security.schema import LINK_HEADER, errors, page_parameters
from patients import break_glass, services
from patients.models import Patient
from patients.serializers import (
    ClinicianSerializer,
    EmergencyAccessByIdentifierSerializer,
    EmergencyAccessSerializer,
    ExportSerializer,
    GrantEndedSerializer,
    GrantSerializer,
    PatientCreateSerializer,
    PatientSerializer,
    PatientUpdateSerializer,
    SearchSerializer,
)

EXPORT_DISPOSITION = OpenApiParameter(
    "Content-Disposition",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    response=[200],
    required=True,
    description='`attachment; filename="neonpro-export-YYYY-MM-DD.json"` (no PHI in the name).',
)
BREAK_GLASS_ERRORS = errors(
    409,
    429,
    c409="You already have emergency access to this patient (it does not stack).",
    c429="Past the hourly or daily ceiling of emergency access: wait Retry-After seconds.",
)


def export_disposition() -> str:
    return f'attachment; filename="neonpro-export-{timezone.localdate().isoformat()}.json"'


class PatientListView(APIView):
    permission_classes = [IsAuthenticated, HasCareRole]
    required_scopes = {"GET": "patients:read"}  # agents (neonpro.security.api)

    @extend_schema(
        operation_id="patients_list",
        summary="The patients the caller may see, newest first",
        parameters=[*page_parameters(), LINK_HEADER],
        responses={200: PatientSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        page = services.list_patients(identity_of(request), page=page_request(request.query_params))
        return paged_response(request, page, PatientSerializer(page.items, many=True).data)

    @extend_schema(
        operation_id="patients_create",
        summary="Register a patient (clinicians; the clinician joins the care team)",
        request=PatientCreateSerializer,
        responses={201: PatientSerializer},
    )
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

    @extend_schema(operation_id="patients_get", summary="One patient", responses={200: PatientSerializer})
    def get(self, request: Request, pk: uuid.UUID) -> Response:
        return Response(PatientSerializer(services.get_patient(identity_of(request), pk)).data)

    @extend_schema(
        operation_id="patients_update",
        summary="Change a patient's details (patients: their contact details and consents)",
        request=PatientUpdateSerializer,
        responses={200: PatientSerializer, **errors(409, c409="The patient changed meanwhile: reload and retry.")},
    )
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

    @extend_schema(
        operation_id="patients_search",
        summary="Find patients by SSN, MRN, email or phone (exact match; at most 50)",
        request=SearchSerializer,
        responses={200: PatientSerializer(many=True)},
    )
    def post(self, request: Request) -> Response:
        serializer = SearchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        found = services.search_patients(identity_of(request), **serializer.validated_data)
        return Response(PatientSerializer(found, many=True).data)


class PatientExportView(APIView):
    """The patient's own bundle (patients only: see services.export_patient), as a download
    whose file name carries no PHI."""

    permission_classes = [IsAuthenticated, HasCareRole]

    @extend_schema(
        operation_id="patients_export",
        summary="Download all of one's own data (patients)",
        parameters=[EXPORT_DISPOSITION],
        responses={200: ExportSerializer},
    )
    def get(self, request: Request, pk: uuid.UUID) -> Response:
        bundle = services.export_patient(identity_of(request), pk)
        return Response(bundle, headers={"Content-Disposition": export_disposition()})


class EmergencyAccessView(APIView):
    permission_classes = [IsAuthenticated, IsClinician]

    @extend_schema(
        operation_id="emergency_access_start",
        summary="Break the glass: read-only access to a patient outside one's care team",
        request=EmergencyAccessSerializer,
        responses={201: GrantSerializer, **BREAK_GLASS_ERRORS},
    )
    def post(self, request: Request, pk: uuid.UUID) -> Response:
        require_recent_reauth(request)  # 403 reauth_required: password and code again first
        serializer = EmergencyAccessSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            grant = break_glass.request_emergency_access(
                identity_of(request), patient_id=pk, **serializer.validated_data
            )
        except break_glass.EmergencyAccessLimitError as refused:
            return _limit_refused(refused)
        rotate_session(request)  # elevated access: a new session id (ASVS 3.2.1)
        return Response(GrantSerializer(_grant_body(grant)).data, status=status.HTTP_201_CREATED)


class EmergencyAccessEndView(APIView):
    """The clinician who broke the glass ends it before it expires."""

    permission_classes = [IsAuthenticated, IsClinician]

    @extend_schema(
        operation_id="emergency_access_end",
        summary="End one's emergency access before it expires",
        request=None,
        responses={200: GrantEndedSerializer},
    )
    def post(self, request: Request, pk: uuid.UUID) -> Response:
        grant = break_glass.end_emergency_access(identity_of(request), pk)
        return Response({"grant": str(grant.pk), "ended_at": grant.ended_at})


class CareTeamView(APIView):
    """The clinicians on a patient's active care team (whom a patient may ask for an appointment)."""

    permission_classes = [IsAuthenticated, HasCareRole]
    required_scopes = {"GET": "patients:read"}

    @extend_schema(
        operation_id="patients_clinicians",
        summary="The clinicians on a patient's care team, by name",
        parameters=[*page_parameters(), LINK_HEADER],
        responses={200: ClinicianSerializer(many=True)},
    )
    def get(self, request: Request, pk: uuid.UUID) -> Response:
        page = services.list_care_team(identity_of(request), pk, page=page_request(request.query_params))
        rows = [{"id": user.pk, "display_name": display_name(user)} for user in page.items]
        return paged_response(request, page, ClinicianSerializer(rows, many=True).data)


class EmergencyAccessByIdentifierView(APIView):
    """Break-glass for a patient known by an identifier (MRN, SSN, email, phone), not an id:
    the value travels in the body. An identifier that names no single patient gets the 404 of
    an unknown patient."""

    permission_classes = EmergencyAccessView.permission_classes

    @extend_schema(
        operation_id="emergency_access_by_identifier",
        summary="Break the glass for the patient an MRN, SSN, email or phone identifies",
        request=EmergencyAccessByIdentifierSerializer,
        responses={
            201: GrantSerializer,
            **errors(404, c404="No single patient has that identifier (or none you could reach)."),
            **BREAK_GLASS_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        require_recent_reauth(request)  # as EmergencyAccessView: password and code again first
        serializer = EmergencyAccessByIdentifierSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            grant = break_glass.request_emergency_access_by_identifier(
                identity_of(request), **serializer.validated_data
            )
        except break_glass.EmergencyAccessLimitError as refused:
            return _limit_refused(refused)
        rotate_session(request)  # elevated access: a new session id (ASVS 3.2.1)
        return Response(GrantSerializer(_grant_body(grant)).data, status=status.HTTP_201_CREATED)


def _limit_refused(refused: break_glass.EmergencyAccessLimitError) -> Response:
    if refused.retry_after is not None:
        return Response(
            error_body("break_glass_limit", str(refused)),
            status=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(refused.retry_after)},
        )
    assert refused.expires_at is not None  # a refusal without retry_after names the grant's end
    until = serializers.DateTimeField().to_representation(refused.expires_at)
    message = f"{refused} It lasts until {until}."
    return Response(error_body("already_granted", message), status=status.HTTP_409_CONFLICT)


def _grant_body(grant: Any) -> dict[str, Any]:
    return {"grant": grant.pk, "patient": grant.patient_id, "expires_at": grant.expires_at}

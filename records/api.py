"""Record and appointment API: thin views over records.services."""

from __future__ import annotations

import uuid

from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from neonpro.security.access import get_visible
from neonpro.security.api import HasCareRole, identity_of
from neonpro.security.pagination import page_request, paged_response
from records import services
from records.models import Appointment, MedicalRecord
from records.serializers import (
    AppointmentCreateSerializer,
    AppointmentFilterSerializer,
    AppointmentSerializer,
    AppointmentUpdateSerializer,
    RecordSerializer,
    RecordWriteSerializer,
)


class PatientRecordsView(APIView):
    permission_classes = [IsAuthenticated, HasCareRole]
    required_scopes = {"GET": "records:read", "POST": "records:write"}  # agents (neonpro.security.api)

    def get(self, request: Request, pk: uuid.UUID) -> Response:
        page = services.list_records(identity_of(request), pk, page=page_request(request.query_params))
        return paged_response(request, page, RecordSerializer(page.items, many=True).data)

    def post(self, request: Request, pk: uuid.UUID) -> Response:
        serializer = RecordWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        record = services.create_record(identity_of(request), pk, dict(serializer.validated_data))
        return Response(RecordSerializer(record).data, status=status.HTTP_201_CREATED)


class RecordDetailView(APIView):
    permission_classes = [IsAuthenticated, HasCareRole]
    required_scopes = {"GET": "records:read"}  # agents add records, they do not amend them

    def get(self, request: Request, pk: uuid.UUID) -> Response:
        return Response(RecordSerializer(services.get_record(identity_of(request), pk)).data)

    def patch(self, request: Request, pk: uuid.UUID) -> Response:
        record = get_visible(MedicalRecord, pk, action="record.update")
        serializer = RecordWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        record = services.update_record(identity_of(request), record, dict(serializer.validated_data))
        return Response(RecordSerializer(record).data)


class AppointmentListView(APIView):
    permission_classes = [IsAuthenticated, HasCareRole]
    required_scopes = {"GET": "appointments:read", "POST": "appointments:write"}

    def get(self, request: Request) -> Response:
        """``?patient=<id>`` (one patient's) or ``?provider=<id>`` (one clinician's schedule)."""
        filters = AppointmentFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        page = services.list_appointments(
            identity_of(request),
            patient_id=filters.validated_data.get("patient"),
            provider_id=filters.validated_data.get("provider"),
            page=page_request(request.query_params),
        )
        return paged_response(request, page, AppointmentSerializer(page.items, many=True).data)

    def post(self, request: Request) -> Response:
        serializer = AppointmentCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        patient_id = data.pop("patient")
        appointment = services.create_appointment(identity_of(request), patient_id, data)
        return Response(AppointmentSerializer(appointment).data, status=status.HTTP_201_CREATED)


class AppointmentDetailView(APIView):
    permission_classes = [IsAuthenticated, HasCareRole]
    required_scopes = {"GET": "appointments:read", "PATCH": "appointments:write"}

    def get(self, request: Request, pk: uuid.UUID) -> Response:
        return Response(AppointmentSerializer(services.get_appointment(identity_of(request), pk)).data)

    def patch(self, request: Request, pk: uuid.UUID) -> Response:
        appointment = get_visible(Appointment, pk, action="appointment.update")
        serializer = AppointmentUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        appointment = services.update_appointment(identity_of(request), appointment, dict(serializer.validated_data))
        return Response(AppointmentSerializer(appointment).data)

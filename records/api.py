"""Record and appointment API: thin views over records.services."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from neonpro.security.access import get_visible
from neonpro.security.api import HasCareRole, identity_of
from neonpro.security.error_body import error_body
from neonpro.security.filters import date_range
from neonpro.security.pagination import page_request, paged_response
from neonpro.security.schema import LINK_HEADER, date_range_parameters, errors, page_parameters
from records import services
from records.models import Appointment, MedicalRecord
from records.serializers import (
    AppointmentCancelSerializer,
    AppointmentCreateSerializer,
    AppointmentFilterSerializer,
    AppointmentRescheduleSerializer,
    AppointmentSerializer,
    AppointmentUpdateSerializer,
    RecordSerializer,
    RecordWriteSerializer,
)


def _records(rows: list[MedicalRecord]) -> object:
    return RecordSerializer(rows, many=True, context={"names": services.names_for(rows)}).data


def _record(row: MedicalRecord) -> object:
    return RecordSerializer(row, context={"names": services.names_for([row])}).data


def _appointments(rows: list[Appointment]) -> object:
    return AppointmentSerializer(rows, many=True, context={"names": services.names_for(rows)}).data


def _appointment(row: Appointment) -> object:
    return AppointmentSerializer(row, context={"names": services.names_for([row])}).data


class PatientRecordsView(APIView):
    permission_classes = [IsAuthenticated, HasCareRole]
    required_scopes = {"GET": "records:read", "POST": "records:write"}  # agents (neonpro.security.api)

    @extend_schema(
        operation_id="records_list",
        summary="A patient's records, newest first",
        parameters=[*page_parameters(), *date_range_parameters("records dated"), LINK_HEADER],
        responses={200: RecordSerializer(many=True)},
    )
    def get(self, request: Request, pk: uuid.UUID) -> Response:
        page = services.list_records(
            identity_of(request), pk, page=page_request(request.query_params), dates=date_range(request.query_params)
        )
        return paged_response(request, page, _records(page.items))

    @extend_schema(
        operation_id="records_create",
        summary="Write a record (clinicians on the patient's care team)",
        request=RecordWriteSerializer,
        responses={201: RecordSerializer},
    )
    def post(self, request: Request, pk: uuid.UUID) -> Response:
        serializer = RecordWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        record = services.create_record(identity_of(request), pk, dict(serializer.validated_data))
        return Response(_record(record), status=status.HTTP_201_CREATED)


class RecordDetailView(APIView):
    permission_classes = [IsAuthenticated, HasCareRole]
    required_scopes = {"GET": "records:read"}  # agents add records, they do not amend them

    @extend_schema(operation_id="records_get", summary="One record", responses={200: RecordSerializer})
    def get(self, request: Request, pk: uuid.UUID) -> Response:
        return Response(_record(services.get_record(identity_of(request), pk)))

    @extend_schema(
        operation_id="records_update",
        summary="Amend a record (its previous state is kept in its history)",
        request=RecordWriteSerializer,
        responses={200: RecordSerializer, **errors(409, c409="The record changed meanwhile: reload it and retry.")},
    )
    def patch(self, request: Request, pk: uuid.UUID) -> Response:
        record = get_visible(MedicalRecord, pk, action="record.update")
        serializer = RecordWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        record = services.update_record(identity_of(request), record, dict(serializer.validated_data))
        return Response(_record(record))


class AppointmentListView(APIView):
    permission_classes = [IsAuthenticated, HasCareRole]
    required_scopes = {"GET": "appointments:read", "POST": "appointments:write"}

    @extend_schema(
        operation_id="appointments_list",
        summary="Appointments the caller may see, earliest first",
        parameters=[
            AppointmentFilterSerializer,
            *date_range_parameters("appointments scheduled"),
            *page_parameters(),
            LINK_HEADER,
        ],
        responses={
            200: AppointmentSerializer(many=True),
            **errors(404, c404="The `patient` filter names no patient you may see."),
        },
    )
    def get(self, request: Request) -> Response:
        """``?patient=<id>`` (one patient's) or ``?provider=<id>`` (one clinician's schedule)."""
        filters = AppointmentFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        page = services.list_appointments(
            identity_of(request),
            patient_id=filters.validated_data.get("patient"),
            provider_id=filters.validated_data.get("provider"),
            page=page_request(request.query_params),
            dates=date_range(request.query_params),
        )
        return paged_response(request, page, _appointments(page.items))

    @extend_schema(
        operation_id="appointments_create",
        summary="Book (clinicians: confirmed) or request (patients: requested) an appointment",
        request=AppointmentCreateSerializer,
        responses={201: AppointmentSerializer, **errors(404, c404="No patient you may see has that id.")},
    )
    def post(self, request: Request) -> Response:
        serializer = AppointmentCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        patient_id = data.pop("patient")
        appointment = services.create_appointment(identity_of(request), patient_id, data)
        return Response(_appointment(appointment), status=status.HTTP_201_CREATED)


class AppointmentDetailView(APIView):
    permission_classes = [IsAuthenticated, HasCareRole]
    required_scopes = {"GET": "appointments:read", "PATCH": "appointments:write"}

    @extend_schema(operation_id="appointments_get", summary="One appointment", responses={200: AppointmentSerializer})
    def get(self, request: Request, pk: uuid.UUID) -> Response:
        return Response(_appointment(services.get_appointment(identity_of(request), pk)))

    @extend_schema(
        operation_id="appointments_update",
        summary="Change an appointment (clinicians on the care team)",
        request=AppointmentUpdateSerializer,
        responses={200: AppointmentSerializer, **errors(409, c409="The appointment changed meanwhile: reload it.")},
    )
    def patch(self, request: Request, pk: uuid.UUID) -> Response:
        appointment = get_visible(Appointment, pk, action="appointment.update")
        serializer = AppointmentUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        appointment = services.update_appointment(identity_of(request), appointment, dict(serializer.validated_data))
        return Response(_appointment(appointment))


STATE_CONFLICT = "The appointment is cancelled, completed or a no-show (or changed meanwhile)."


def _state_conflict(refused: services.AppointmentStateError) -> Response:
    return Response(error_body("conflict", str(refused)), status=status.HTTP_409_CONFLICT)


class AppointmentCancelView(APIView):
    """The patient or a clinician on the care team cancels a requested or confirmed appointment."""

    permission_classes = [IsAuthenticated, HasCareRole]

    @extend_schema(
        operation_id="appointments_cancel",
        summary="Cancel an appointment",
        request=AppointmentCancelSerializer,
        responses={200: AppointmentSerializer, **errors(409, c409=STATE_CONFLICT)},
    )
    def post(self, request: Request, pk: uuid.UUID) -> Response:
        AppointmentCancelSerializer(data=request.data).is_valid(raise_exception=True)
        try:
            appointment = services.cancel_appointment(identity_of(request), pk)
        except services.AppointmentStateError as refused:
            return _state_conflict(refused)
        return Response(_appointment(appointment))


class AppointmentRescheduleView(APIView):
    """A new time: a patient's move is a request again (``requested``), a clinician's ``confirmed``."""

    permission_classes = [IsAuthenticated, HasCareRole]

    @extend_schema(
        operation_id="appointments_reschedule",
        summary="Move an appointment to a new time",
        request=AppointmentRescheduleSerializer,
        responses={200: AppointmentSerializer, **errors(409, c409=STATE_CONFLICT)},
    )
    def post(self, request: Request, pk: uuid.UUID) -> Response:
        serializer = AppointmentRescheduleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            appointment = services.reschedule_appointment(identity_of(request), pk, **serializer.validated_data)
        except services.AppointmentStateError as refused:
            return _state_conflict(refused)
        return Response(_appointment(appointment))

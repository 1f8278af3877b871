"""The clinician's pages for records and appointments (records/views.py), as ``records:<name>``."""

from __future__ import annotations

from django.urls import path

from records import views

app_name = "records"
urlpatterns = [
    path("patients/<uuid:pk>/records/new/", views.record_new, name="record-new"),
    path("records/<uuid:pk>/", views.record_detail, name="record"),
    path("records/<uuid:pk>/edit/", views.record_edit, name="record-edit"),
    path("patients/<uuid:pk>/appointments/new/", views.appointment_new, name="appointment-new"),
    path("appointments/", views.schedule, name="schedule"),
    path("appointments/<uuid:pk>/confirm/", views.appointment_confirm, name="appointment-confirm"),
    path("appointments/<uuid:pk>/reschedule/", views.appointment_reschedule, name="appointment-reschedule"),
    path("appointments/<uuid:pk>/cancel/", views.appointment_cancel, name="appointment-cancel"),
]

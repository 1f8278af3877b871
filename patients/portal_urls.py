"""The patient portal (patients/portal.py), under ``/portal/``, as ``portal:<name>``."""

from __future__ import annotations

from django.urls import path

from patients import portal

app_name = "portal"
urlpatterns = [
    path("", portal.portal_home, name="home"),
    path("contact/", portal.contact, name="contact"),
    path("appointments/new/", portal.appointment_request, name="appointment-new"),
    path("appointments/<uuid:pk>/cancel/", portal.appointment_cancel, name="appointment-cancel"),
    path("export/", portal.export, name="export"),
]

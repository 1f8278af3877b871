"""The clinician's pages for patients (patients/views.py); names are used as ``patients:<name>``."""

from __future__ import annotations

from django.urls import path

from patients import views

app_name = "patients"
urlpatterns = [
    path("patients/", views.patient_list, name="list"),
    path("patients/search/", views.patient_search, name="search"),
    path("patients/<uuid:pk>/", views.patient_chart, name="chart"),
    path("patients/<uuid:pk>/reveal-ssn/", views.reveal_ssn, name="reveal-ssn"),
    path("patients/<uuid:pk>/emergency-access/", views.break_glass, name="break-glass"),
    path("patients/emergency-access/", views.break_glass_by_identifier, name="break-glass-identifier"),
    path("patients/emergency-access/<uuid:pk>/end/", views.break_glass_end, name="break-glass-end"),
]

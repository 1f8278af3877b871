from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from neonpro.accounts import api as accounts_api
from neonpro.accounts import views as accounts_views
from neonpro.security import api_root
from neonpro.security import docs as api_docs
from neonpro.security import views as security_views
from patients import api as patients_api
from records import api as records_api

api_v1 = [
    path("me/", accounts_api.MeView.as_view(), name="me"),
    path("patients/", patients_api.PatientListView.as_view(), name="patient-list"),
    path("patients/search/", patients_api.PatientSearchView.as_view(), name="patient-search"),
    path("patients/<uuid:pk>/", patients_api.PatientDetailView.as_view(), name="patient-detail"),
    path("patients/<uuid:pk>/export/", patients_api.PatientExportView.as_view(), name="patient-export"),
    path("patients/<uuid:pk>/emergency-access/", patients_api.EmergencyAccessView.as_view(), name="emergency-access"),
    path("emergency-access/<uuid:pk>/end/", patients_api.EmergencyAccessEndView.as_view(), name="emergency-access-end"),
    path("patients/<uuid:pk>/records/", records_api.PatientRecordsView.as_view(), name="patient-records"),
    path("records/<uuid:pk>/", records_api.RecordDetailView.as_view(), name="record-detail"),
    path("appointments/", records_api.AppointmentListView.as_view(), name="appointment-list"),
    path("appointments/<uuid:pk>/", records_api.AppointmentDetailView.as_view(), name="appointment-detail"),
    # -- The API surface (docs/api.md) --
    path("", api_root.ApiRootView.as_view(), name="api-root"),
    path("patients/<uuid:pk>/clinicians/", patients_api.CareTeamView.as_view(), name="patient-clinicians"),
    path(
        "emergency-access/",
        patients_api.EmergencyAccessByIdentifierView.as_view(),
        name="emergency-access-by-identifier",
    ),
    path("appointments/<uuid:pk>/cancel/", records_api.AppointmentCancelView.as_view(), name="appointment-cancel"),
    path(
        "appointments/<uuid:pk>/reschedule/",
        records_api.AppointmentRescheduleView.as_view(),
        name="appointment-reschedule",
    ),
]

handler400 = "neonpro.security.errors.bad_request"
handler403 = "neonpro.security.errors.permission_denied"
handler404 = "neonpro.security.errors.page_not_found"
handler500 = "neonpro.security.errors.server_error"

urlpatterns = [
    path("", security_views.home, name="home"),
    path("healthz", security_views.healthz, name="healthz"),
    path("readyz", security_views.readyz, name="readyz"),
    # Browsers ask for /favicon.ico on every page that names none (the admin's).
    path("favicon.ico", security_views.favicon, name="favicon"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="registration/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/change/", accounts_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "accounts/password/change/done/", accounts_views.PasswordChangeDoneView.as_view(), name="password_change_done"
    ),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", api_docs.SchemaView.as_view(), name="api-schema"),
    path("api/docs/", api_docs.DocsView.as_view(url_name="api-schema"), name="api-docs"),
]

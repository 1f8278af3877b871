from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from neonpro.accounts import api as accounts_api
from neonpro.accounts import notification_views, session_api, session_views, signin_views
from neonpro.accounts import views as accounts_views
from neonpro.security import api_root
from neonpro.security import docs as api_docs
from neonpro.security import views as security_views
from patients import api as patients_api
from records import api as records_api

api_v1 = [
    path("me/", accounts_api.MeView.as_view(), name="me"),
    # -- Sessions: the caller's own browser sessions
    path("sessions/", session_api.SessionListView.as_view(), name="session-list"),
    path("sessions/<uuid:pk>/", session_api.SessionDetailView.as_view(), name="session-detail"),
    path("reauth/", signin_views.ReauthAPIView.as_view(), name="api-reauth"),
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
    # -- Sign-in (docs/sign-in.md) --
    path("accounts/login/", signin_views.SignInView.as_view(), name="login"),
    path("accounts/login/verify/", signin_views.verify_view, name="signin_verify"),
    path("accounts/login/enrol/", signin_views.enrol_view, name="signin_enrol"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/reauth/", signin_views.reauth_view, name="reauth"),
    path("accounts/mfa/", signin_views.settings_view, name="mfa"),
    path("accounts/mfa/authenticator/", signin_views.replace_view, name="mfa_replace"),
    path("accounts/mfa/recovery-codes/", signin_views.recovery_codes_view, name="mfa_recovery_codes"),
    path("accounts/mfa/remove/", signin_views.remove_view, name="mfa_remove"),
    path("accounts/password/reset/", signin_views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "accounts/password/reset/done/",
        auth_views.PasswordResetDoneView.as_view(template_name="registration/password_reset_done.html"),
        name="password_reset_done",
    ),
    path(
        "accounts/password/reset/<uidb64>/<token>/",
        signin_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "accounts/password/reset/complete/",
        auth_views.PasswordResetCompleteView.as_view(template_name="registration/password_reset_complete.html"),
        name="password_reset_complete",
    ),
    # -- end of sign-in --
    path("accounts/password/change/", accounts_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "accounts/password/change/done/", accounts_views.PasswordChangeDoneView.as_view(), name="password_change_done"
    ),
    # -- Sessions: a person's own sessions (neonpro/accounts/session_views.py)
    path("accounts/sessions/", session_views.session_list, name="sessions"),
    path("accounts/sessions/end-others/", session_views.session_end_others, name="session-end-others"),
    path("accounts/sessions/<uuid:pk>/end/", session_views.session_end, name="session-end"),
    path("accounts/sessions/keepalive/", session_views.session_keepalive, name="session-keepalive"),
    path("notifications/", notification_views.notification_list, name="notifications"),
    path("notifications/read-all/", notification_views.notification_read_all, name="notifications-read-all"),
    path("notifications/<uuid:pk>/read/", notification_views.notification_read, name="notification-read"),
    # -- The web UI: clinicians (patients/, records/) and the patient portal (docs/web-ui.md)
    path("", include("patients.urls")),
    path("", include("records.urls")),
    path("portal/", include("patients.portal_urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", api_docs.SchemaView.as_view(), name="api-schema"),
    path("api/docs/", api_docs.DocsView.as_view(url_name="api-schema"), name="api-docs"),
]

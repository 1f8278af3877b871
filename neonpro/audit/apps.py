from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "neonpro.audit"
    label = "audit"
    verbose_name = "Audit log"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from neonpro.audit import signals  # noqa: F401 - login/logout/failed-login events

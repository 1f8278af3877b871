from django.apps import AppConfig


class RecordsConfig(AppConfig):
    name = "records"
    verbose_name = "Medical records"

    def ready(self) -> None:
        from records import signals  # noqa: F401 - connects the integrity-failure receiver

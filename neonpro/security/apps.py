from django.apps import AppConfig


class SecurityConfig(AppConfig):
    name = "neonpro.security"
    label = "security"
    verbose_name = "Security"

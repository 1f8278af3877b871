"""The NeonPro platform: settings, URLs, ASGI entry point, Celery app and cross-cutting apps."""

from neonpro.celery import app as celery_app

__all__ = ["celery_app"]

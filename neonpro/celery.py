"""The Celery app. Tasks take ids, never PHI; the beat schedule grows with later issues."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neonpro.settings")

app = Celery("neonpro")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

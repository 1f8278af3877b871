"""Whether anything runs the periodic tasks (django-celery-beat) in this installation.

The embedded mode (`make run`: eager tasks, in-memory broker) starts no beat scheduler and no
worker, so its periodic tasks are configured but never run; the admin says so instead of
showing them as quietly "enabled".
"""

from __future__ import annotations

from django.conf import settings

EMBEDDED_NOTICE = (
    "No scheduler runs in this installation (the embedded mode of `make run` starts no Celery beat "
    "and no worker): the periodic tasks below are configured but never run. Run due key rotations "
    "by hand with `python manage.py keys rotate --due`, or deploy with `celery -A neonpro beat` and "
    "`celery -A neonpro worker` (docs/keys.md)."
)


def scheduler_runs() -> bool:
    """False when tasks can only run inline (eager, in-memory broker): nothing would run a schedule."""
    eager = bool(getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False))
    broker = str(getattr(settings, "CELERY_BROKER_URL", "") or "")
    return not (eager and broker.startswith("memory://"))

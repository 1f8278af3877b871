"""Celery tasks: thin adapters over keys services (ids and names in, never key material)."""

from __future__ import annotations

from functools import partial

from celery import shared_task
from django.db import transaction


@shared_task(name="keys.rotate_due_keys")  # type: ignore[untyped-decorator]
def rotate_due_keys_task() -> list[int]:
    """Daily (django-celery-beat): rotate what policy says is due, then re-encrypt."""
    from keys.rotation import rotate_due_keys

    rotated = rotate_due_keys()
    for purpose in sorted({due.purpose for due, _ in rotated if due.purpose in ("field", "index")}):
        transaction.on_commit(partial(reencrypt_task.delay, purpose))
    return [key.pk for _, key in rotated]


@shared_task(name="keys.reencrypt", acks_late=True)  # type: ignore[untyped-decorator]
def reencrypt_task(purpose: str, batch: int = 500) -> int:
    """Resumable: a worker killed mid-job loses one batch; the redelivered task resumes."""
    from keys.reencrypt import reencrypt

    return sum(job.rows_changed for job in reencrypt(purpose, batch=batch))


@shared_task(name="keys.rotate_subject_epoch")  # type: ignore[untyped-decorator]
def rotate_subject_epoch_task() -> int:
    """Daily (django-celery-beat): new subject epoch when due, retired epochs destroyed."""
    from keys.subjects import rotate_subject_epoch

    return len(rotate_subject_epoch().destroyed)

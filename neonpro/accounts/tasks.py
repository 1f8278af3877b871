"""Celery tasks of accounts: thin adapters over services (ids in, never PHI or tokens)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="accounts.purge_expired_sessions")  # type: ignore[untyped-decorator]
def purge_expired_sessions_task() -> int:
    """Every 15 minutes (django-celery-beat): delete sessions past a limit, auditing each timeout."""
    from neonpro.accounts.sessions import purge_expired_sessions

    return purge_expired_sessions()

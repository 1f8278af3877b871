"""System checks: the server refuses to start without a usable master key.

``keys.E001``: the provider cannot be built (no key, malformed key, key file readable by
others, HSM unreachable). ``keys.E002`` (only when checks run with database access, as
``migrate`` and ``serve`` do): stored data keys were wrapped by a master key the provider
does not hold — the configured master key is wrong. ``keys.E003`` (same condition): a held
master key is not the one that wrapped them — an HSM key replaced under the same label. Its
check value differs from the one recorded at first use, or, with none recorded yet, it does
not unwrap a stored data key wrapped under its id (the value is recorded once it does).
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.db import DatabaseError, connections, router

from keys.exceptions import KeysError

HINT = (
    "Set NEONPRO_MASTER_KEY (base64 of 32 random bytes) or NEONPRO_MASTER_KEY_FILE (a 0600 file), or "
    "run `python manage.py keys create-master` on a new installation. `python manage.py keys verify` "
    "explains the failure in detail."
)


@checks.register("keys")
def check_master_key(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from keys.providers import get_provider, reset_provider

    reset_provider()
    try:
        provider = get_provider()
        provider.health()
    except KeysError as exc:
        return [checks.Error(f"The master key is not usable: {exc}", hint=HINT, id="keys.E001")]
    if not databases:
        return []
    return _check_wrapping_keys(provider, databases)


def _check_wrapping_keys(provider: Any, databases: Any) -> list[checks.CheckMessage]:
    from keys.models import DataKey

    alias = router.db_for_read(DataKey)
    if alias not in databases:
        return []
    from keys.providers import fallback_providers

    providers = [provider, *fallback_providers()]
    held = {info.key_id for p in providers for info in p.list_keys()}
    try:
        if DataKey._meta.db_table not in connections[alias].introspection.table_names():
            return []
        used = set(DataKey.objects.using(alias).usable().values_list("wrapping_key_id", flat=True).distinct())
    except DatabaseError:
        return []
    missing = sorted(k for k in used if not any(p.holds(k) for p in providers))
    if not missing:
        return _check_identities(providers, sorted(used), alias)
    return [
        checks.Error(
            f"Data keys are wrapped by master key(s) {', '.join(missing)}, which the configured "
            f"{provider.name} provider does not hold (it holds {', '.join(sorted(held))}): the master key is "
            "wrong or was replaced, and no encrypted value can be read.",
            hint=HINT,
            id="keys.E002",
        )
    ]


def _check_identities(providers: list[Any], used: list[str], alias: str) -> list[checks.CheckMessage]:
    from keys.exceptions import MasterKeyError, ProviderError
    from keys.models import DataKey, MasterKeyCheck
    from keys.services import check_master_key_identity, replaced_key_message

    errors: list[checks.CheckMessage] = []
    for key_id in used:
        provider = next(p for p in providers if p.holds(key_id))
        try:
            if not MasterKeyCheck.objects.using(alias).filter(key_id=key_id).exists():
                sample = (
                    DataKey.objects.using(alias)
                    .usable()
                    .filter(wrapping_key_id=key_id)
                    .exclude(wrapped_key=b"")
                    .first()
                )
                if sample is not None and provider.check_value(key_id) is not None:
                    try:
                        provider.unwrap_key(bytes(sample.wrapped_key), key_id=key_id, context=sample.wrap_context())
                    except MasterKeyError:
                        raise
                    except ProviderError as exc:
                        if not exc.permanent:
                            raise
                        raise MasterKeyError(
                            replaced_key_message(key_id, f"it does not unwrap data key {sample.pk}")
                        ) from None
            check_master_key_identity(provider, key_id, using=alias)
        except KeysError as exc:
            errors.append(checks.Error(f"The master key is not usable: {exc}", hint=HINT, id="keys.E003"))
    return errors

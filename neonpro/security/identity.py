"""The signed identity that row-level security reads: a token SQL injection cannot forge.

Guarantees:

* The app sets one transaction-local setting, ``neonpro.identity``: a token with the identity
  fields, the transaction it is bound to (``<backend pid>.<transaction start, µs>``, which
  the database reports through ``neonpro_identity_binding()``) and an HMAC-SHA256 tag under
  a key derived from the ``identity`` MAC purpose of ``keys`` (label ``rls-identity``).
* The policies read the identity only through ``neonpro_identity_claim(field)``, a SECURITY
  DEFINER function owned by the owner role. It recomputes the tag with the key stored in
  ``neonpro_identity.signing_key`` — a table in a schema the application role has no USAGE
  on — and returns NULL for anything else: no token, a malformed one, another transaction's
  (replayed), a tampered field, an unknown or removed key. NULL matches no row.
* The owner installs the keys (``install_identity_keys``: after every ``migrate``, and by
  ``manage.py db identity-keys`` after an identity-key rotation); the app signs with the newest
  key the database holds, so a rotation takes effect when it is installed, never before.
* The login role that owns the function (the owner, which could switch RLS off anyway) may
  still declare an identity with the plain settings (``neonpro.role`` ...): data migrations
  and dumps. No other role can: ``session_user`` cannot be changed without a superuser.

Nothing here logs a token or key.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neonpro.security.context import Identity

VERSION = "v1"
LABEL = b"rls-identity"
SETTING = "neonpro.identity"
SCHEMA = "neonpro_identity"
MAX_TOKEN = 512
_SCOPE = re.compile(r"[A-Za-z0-9_.\-]+")
ROLES = ("patient", "clinician", "admin", "agent", "system")

BINDING_SQL = "SELECT binding, key_ids FROM neonpro_identity_binding()"
SET_SQL = f"SELECT set_config('{SETTING}', %s, true)"

# The whole token is at most MAX_TOKEN characters, eight ':'-separated parts, the tag last.
CLAIM_FUNCTION = f"""
CREATE OR REPLACE FUNCTION public.neonpro_identity_claim(claim text) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    token text := current_setting('{SETTING}', true);
    field integer := CASE claim WHEN 'role' THEN 4 WHEN 'user_id' THEN 5 WHEN 'patient_id' THEN 6
                                   WHEN 'scopes' THEN 7 END;
    part text[];
    secret bytea;
BEGIN
    IF field IS NULL THEN
        RETURN NULL;
    END IF;
    IF token IS NOT NULL AND length(token) BETWEEN 1 AND {MAX_TOKEN} THEN
        part := string_to_array(token, ':');
        IF cardinality(part) = 8 AND part[1] = '{VERSION}' AND part[2] ~ '^[1-9][0-9]{{0,8}}$'
           AND part[8] ~ '^[0-9a-f]{{64}}$'
           AND part[3] = pg_backend_pid()::text || '.'
                         || (extract(epoch FROM transaction_timestamp()) * 1000000)::bigint::text THEN
            SELECT k.secret INTO secret FROM {SCHEMA}.signing_key k WHERE k.key_id = part[2]::integer;
            -- Compare digests of the tags, not the tags: timing says nothing about the right tag.
            IF secret IS NOT NULL AND sha256({{hmac}}(convert_to(left(token, length(token) - 65), 'UTF8'),
                                                    secret, 'sha256')) = sha256(decode(part[8], 'hex')) THEN
                RETURN nullif(part[field], '');
            END IF;
        END IF;
    END IF;
    -- The owner itself (it could switch row-level security off anyway) may declare an identity.
    IF session_user = current_user THEN
        RETURN nullif(current_setting('neonpro.' || claim, true), '');
    END IF;
    RETURN NULL;
END
$function$
"""  # noqa: S608 - constant SQL
BINDING_FUNCTION = f"""
CREATE OR REPLACE FUNCTION public.neonpro_identity_binding(OUT binding text, OUT key_ids integer[])
LANGUAGE sql STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT pg_backend_pid()::text || '.' || (extract(epoch FROM transaction_timestamp()) * 1000000)::bigint::text,
           coalesce((SELECT array_agg(k.key_id ORDER BY k.key_id DESC) FROM {SCHEMA}.signing_key k), '{{}}')
$function$
"""  # noqa: S608 - constant SQL
FUNCTIONS = ("neonpro_identity_claim(text)", "neonpro_identity_binding()")


def install_statements(hmac_schema: str) -> list[str]:
    """DDL of the signed identity (run by the owner); ``hmac_schema`` is where pgcrypto lives."""
    hmac = f'"{hmac_schema}".hmac'
    return [
        f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
        f"REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC",
        f"CREATE TABLE IF NOT EXISTS {SCHEMA}.signing_key ("
        "key_id integer PRIMARY KEY CHECK (key_id > 0), "
        "secret bytea NOT NULL CHECK (octet_length(secret) = 32), "
        "installed_at timestamptz NOT NULL DEFAULT now())",
        f"REVOKE ALL ON {SCHEMA}.signing_key FROM PUBLIC",
        CLAIM_FUNCTION.replace("{hmac}", hmac),
        BINDING_FUNCTION,
        *(f"REVOKE ALL ON FUNCTION public.{function} FROM PUBLIC" for function in FUNCTIONS),
    ]


def uninstall_statements() -> list[str]:
    return [
        *(f"DROP FUNCTION IF EXISTS public.{function}" for function in FUNCTIONS),
        f"DROP TABLE IF EXISTS {SCHEMA}.signing_key",
    ]


def install(cursor: Any) -> None:
    """Create pgcrypto (a trusted extension: the owner may) and the signed identity's objects."""
    cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    cursor.execute(f"CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA {SCHEMA}")
    cursor.execute("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pgcrypto'")
    schema = cursor.fetchone()[0].strip('"')
    for statement in install_statements(schema):
        cursor.execute(statement)


def uninstall(cursor: Any) -> None:
    for statement in uninstall_statements():
        cursor.execute(statement)


@dataclass(frozen=True)
class Binding:
    """What the database says about the current transaction: its binding and installed key ids."""

    binding: str
    key_ids: tuple[int, ...]


def fetch_binding(cursor: Any) -> Binding:
    cursor.execute(BINDING_SQL)
    binding, key_ids = cursor.fetchone()
    return Binding(binding, tuple(key_ids))


class IdentityKeyMissing(Exception):  # noqa: N818 - the name says what is wrong
    """No identity key the app holds is installed in the database (run `db identity-keys`)."""


def _field(value: uuid.UUID | None) -> str:
    return "" if value is None else str(uuid.UUID(str(value)))


def token(identity: Identity, binding: Binding) -> str:
    """The signed token of ``identity`` for the transaction ``binding`` describes.

    Signed with the newest key that both the database and this process hold; raises
    IdentityKeyMissing when there is none, ValueError for a role or scope that cannot be signed.
    """
    from keys import crypto
    from keys.keyring import keyring

    if identity.role not in ROLES:
        raise ValueError("unknown identity role")
    if any(not _SCOPE.fullmatch(scope) for scope in identity.scopes):
        raise ValueError("identity scopes must be letters, digits, '_', '.' or '-'")
    usable = {key.key_id for key in keyring.mac_keys("identity")}
    key_id = next((key for key in binding.key_ids if key in usable), None)
    if key_id is None:
        raise IdentityKeyMissing(
            "no identity key is installed in the database: run `manage.py db identity-keys` as the owner role"
        )
    fields = [identity.role, _field(identity.user_id), _field(identity.patient_id), " ".join(identity.scopes)]
    message = ":".join([VERSION, str(key_id), binding.binding, *fields])
    _, tag = crypto.sign(message.encode(), purpose="identity", label=LABEL, key_id=key_id)
    return f"{message}:{tag.hex()}"


def set_identity(cursor: Any, identity: Identity, binding: Binding | None = None) -> Binding | None:
    """Set ``identity`` for the cursor's current transaction; returns the binding used.

    An anonymous identity (no role) clears the setting without asking the database anything.
    """
    if not identity.role:
        cursor.execute(SET_SQL, [""])
        return binding
    binding = binding or fetch_binding(cursor)
    cursor.execute(SET_SQL, [token(identity, binding)])
    return binding


def install_identity_keys(cursor: Any) -> list[int]:
    """As the owner: store the derived signing key of every usable identity key, drop the rest.

    Returns the installed key ids, newest first. The keys come from ``keys`` (so this needs the
    master key, as ``migrate`` does); the table is readable by its owner only.
    """
    from keys import crypto
    from keys.keyring import keyring

    key_ids = [key.key_id for key in keyring.mac_keys("identity")]
    for key_id in key_ids:
        secret = crypto.derived_key(purpose="identity", label=LABEL, key_id=key_id)
        cursor.execute(
            f"INSERT INTO {SCHEMA}.signing_key (key_id, secret) VALUES (%s, %s) "  # noqa: S608 - constant SQL
            "ON CONFLICT (key_id) DO UPDATE SET secret = EXCLUDED.secret, installed_at = now() "
            "WHERE signing_key.secret IS DISTINCT FROM EXCLUDED.secret",
            [key_id, secret],
        )
    cursor.execute(f"DELETE FROM {SCHEMA}.signing_key WHERE NOT key_id = ANY(%s)", [key_ids])  # noqa: S608
    return sorted(key_ids, reverse=True)


def installed(cursor: Any) -> bool:
    """Whether the signed identity's functions exist in this database."""
    cursor.execute("SELECT to_regprocedure('public.neonpro_identity_claim(text)') IS NOT NULL")
    return bool(cursor.fetchone()[0])


def grant_statements(app: str) -> Sequence[str]:
    """The application role may call both functions (and nothing else of the signed identity)."""
    return [f'GRANT EXECUTE ON FUNCTION public.{function} TO "{app}"' for function in FUNCTIONS]

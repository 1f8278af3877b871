"""Row-level security reads a signed, transaction-bound identity (PostgreSQL only).

Creates pgcrypto (a trusted extension, so the owner may), the owner-only key table and the
two SECURITY DEFINER functions (neonpro/security/identity.py), then re-creates every PHI
table's policies to read the identity through ``neonpro_identity_claim()`` instead of plain
settings. The keys are installed after ``migrate`` (post_migrate) and by ``db identity-keys``.
Reversing restores the previous policies first (never an unprotected table).
"""

from typing import Any

from django.db import migrations

from neonpro.security import identity
from neonpro.security.rls import SIGNED, UNSIGNED, PostgresOnlySQL, phi_policies, policy_statements


def _forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            identity.install(cursor)


def _backwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            identity.uninstall(cursor)


class Migration(migrations.Migration):
    dependencies = [
        ("patients", "0005_break_glass_review"),
        ("records", "0004_patients_cancel_only_open_appointments"),
        ("keys", "0004_mac_purposes"),
    ]

    operations = [
        migrations.RunPython(_forwards, _backwards, elidable=False),
        *(
            PostgresOnlySQL(policy_statements(table, signed), policy_statements(table, phi_policies(UNSIGNED)[table]))
            for table, signed in phi_policies(SIGNED).items()
        ),
    ]

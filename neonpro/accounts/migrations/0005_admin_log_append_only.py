"""The admin's change log is evidence too: append-only for everyone, like the audit log.

Uses the trigger function of neonpro/audit/migrations/0002_append_only.py. (The application
role also loses UPDATE, DELETE and TRUNCATE on it: neonpro.security.db.APPEND_ONLY_TABLES.)
"""

from django.db import migrations

from neonpro.security.rls import PostgresOnlySQL

FORWARD = """
DROP TRIGGER IF EXISTS admin_log_append_only_rows ON django_admin_log;
CREATE TRIGGER admin_log_append_only_rows BEFORE UPDATE OR DELETE ON django_admin_log
    FOR EACH ROW EXECUTE FUNCTION neonpro_audit_append_only();
DROP TRIGGER IF EXISTS admin_log_append_only_truncate ON django_admin_log;
CREATE TRIGGER admin_log_append_only_truncate BEFORE TRUNCATE ON django_admin_log
    FOR EACH STATEMENT EXECUTE FUNCTION neonpro_audit_append_only();
"""
REVERSE = """
DROP TRIGGER IF EXISTS admin_log_append_only_rows ON django_admin_log;
DROP TRIGGER IF EXISTS admin_log_append_only_truncate ON django_admin_log;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_patient_account"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("audit", "0002_append_only"),
    ]

    operations = [PostgresOnlySQL(FORWARD, REVERSE)]

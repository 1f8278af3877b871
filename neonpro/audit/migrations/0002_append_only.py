"""The audit log is append-only for everyone: a trigger refuses UPDATE, DELETE and TRUNCATE."""

from django.db import migrations

from neonpro.security.rls import PostgresOnlySQL

FORWARD = """
CREATE OR REPLACE FUNCTION neonpro_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
DROP TRIGGER IF EXISTS audit_append_only_rows ON audit_auditevent;
CREATE TRIGGER audit_append_only_rows BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION neonpro_audit_append_only();
DROP TRIGGER IF EXISTS audit_append_only_truncate ON audit_auditevent;
CREATE TRIGGER audit_append_only_truncate BEFORE TRUNCATE ON audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION neonpro_audit_append_only();
"""
REVERSE = """
DROP TRIGGER IF EXISTS audit_append_only_rows ON audit_auditevent;
DROP TRIGGER IF EXISTS audit_append_only_truncate ON audit_auditevent;
DROP FUNCTION IF EXISTS neonpro_audit_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [PostgresOnlySQL(FORWARD, REVERSE)]

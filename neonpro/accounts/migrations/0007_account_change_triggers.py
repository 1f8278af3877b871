"""Triggers that record every write to accounts in accounts_accountchange (PostgreSQL only).

The ORM's signals audit account changes into the hash chain (neonpro/accounts/signals.py);
these triggers are the backstop for whatever bypasses them — raw SQL, ``QuerySet.update()``,
``bulk_update`` — and are themselves append-only. Column names only, never values; the
password column shows up as "password", its hash never.
"""

from django.db import migrations

from neonpro.security.rls import PostgresOnlySQL

FORWARD = """
CREATE OR REPLACE FUNCTION neonpro_record_account_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb := CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) ELSE '{}'::jsonb END;
    new_row jsonb := CASE WHEN TG_OP IN ('UPDATE', 'INSERT') THEN to_jsonb(NEW) ELSE '{}'::jsonb END;
    changed jsonb;
    account text;
BEGIN
    SELECT coalesce(jsonb_agg(key ORDER BY key), '[]'::jsonb) INTO changed
    FROM (SELECT key FROM jsonb_object_keys(old_row || new_row) AS key
          WHERE old_row -> key IS DISTINCT FROM new_row -> key) AS keys;
    IF TG_OP = 'UPDATE' AND changed = '["last_login"]'::jsonb THEN
        RETURN NULL;  -- a sign-in, not an account change
    END IF;
    account := coalesce(new_row ->> TG_ARGV[0], old_row ->> TG_ARGV[0]);
    INSERT INTO accounts_accountchange
        (occurred_at, table_name, operation, row_id, columns, database_role, acting_as, transaction_id)
    VALUES (clock_timestamp(), TG_TABLE_NAME, TG_OP, account, changed, current_user,
            coalesce(current_setting('neonpro.user_id', true), ''), txid_current());
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS accounts_user_changes ON accounts_user;
CREATE TRIGGER accounts_user_changes AFTER INSERT OR UPDATE OR DELETE ON accounts_user
    FOR EACH ROW EXECUTE FUNCTION neonpro_record_account_change('id');
DROP TRIGGER IF EXISTS accounts_user_groups_changes ON accounts_user_groups;
CREATE TRIGGER accounts_user_groups_changes AFTER INSERT OR UPDATE OR DELETE ON accounts_user_groups
    FOR EACH ROW EXECUTE FUNCTION neonpro_record_account_change('user_id');
DROP TRIGGER IF EXISTS accounts_user_permissions_changes ON accounts_user_user_permissions;
CREATE TRIGGER accounts_user_permissions_changes AFTER INSERT OR UPDATE OR DELETE ON accounts_user_user_permissions
    FOR EACH ROW EXECUTE FUNCTION neonpro_record_account_change('user_id');
DROP TRIGGER IF EXISTS auth_group_permissions_changes ON auth_group_permissions;
CREATE TRIGGER auth_group_permissions_changes AFTER INSERT OR UPDATE OR DELETE ON auth_group_permissions
    FOR EACH ROW EXECUTE FUNCTION neonpro_record_account_change('group_id');
DROP TRIGGER IF EXISTS accounts_accountchange_append_only_rows ON accounts_accountchange;
CREATE TRIGGER accounts_accountchange_append_only_rows BEFORE UPDATE OR DELETE ON accounts_accountchange
    FOR EACH ROW EXECUTE FUNCTION neonpro_audit_append_only();
DROP TRIGGER IF EXISTS accounts_accountchange_append_only_truncate ON accounts_accountchange;
CREATE TRIGGER accounts_accountchange_append_only_truncate BEFORE TRUNCATE ON accounts_accountchange
    FOR EACH STATEMENT EXECUTE FUNCTION neonpro_audit_append_only();
"""
REVERSE = """
DROP TRIGGER IF EXISTS accounts_user_changes ON accounts_user;
DROP TRIGGER IF EXISTS accounts_user_groups_changes ON accounts_user_groups;
DROP TRIGGER IF EXISTS accounts_user_permissions_changes ON accounts_user_user_permissions;
DROP TRIGGER IF EXISTS auth_group_permissions_changes ON auth_group_permissions;
DROP TRIGGER IF EXISTS accounts_accountchange_append_only_rows ON accounts_accountchange;
DROP TRIGGER IF EXISTS accounts_accountchange_append_only_truncate ON accounts_accountchange;
DROP FUNCTION IF EXISTS neonpro_record_account_change();
"""


class Migration(migrations.Migration):
    dependencies = [("accounts", "0006_account_change"), ("audit", "0002_append_only"), ("auth", "0012_alter_user_first_name_max_length")]

    operations = [PostgresOnlySQL(FORWARD, REVERSE)]

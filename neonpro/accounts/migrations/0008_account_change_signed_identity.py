"""The account-change trigger names who acted from the signed identity (PostgreSQL only).

0007's trigger read the plain ``neonpro.user_id`` setting, which the application stopped
setting when row-level security moved to the signed, transaction-bound identity
(security 0001): ``acting_as`` stayed empty. It now reads ``neonpro_identity_claim('user_id')``,
the same claim the policies trust, so a forged plain setting cannot name someone else either.
"""

from django.db import migrations

from neonpro.security.rls import PostgresOnlySQL

FUNCTION = """
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
            coalesce(%s, ''), txid_current());
    RETURN NULL;
END
$$;
"""
FORWARD = FUNCTION % "public.neonpro_identity_claim('user_id')"
REVERSE = FUNCTION % "current_setting('neonpro.user_id', true)"


class Migration(migrations.Migration):
    dependencies = [("accounts", "0007_account_change_triggers"), ("security", "0001_signed_identity")]

    operations = [PostgresOnlySQL(FORWARD, REVERSE)]

"""Keyed chain: a key id on every event, ids only from the sequence, no unique ``prev_hash``.

* ``key_id``: the ``audit`` data key whose HMAC is the event's ``hash``; NULL on the events
  written before this release (plain SHA-256, verified as legacy: see docs/audit.md).
* ``prev_hash`` is no longer unique: with the constraint, one row inserted by hand with
  ``prev_hash`` = the tail's hash made every later append fail (the "jam"). The verifier
  walks the rows in id order and refuses a fork; the writer never depends on the database to
  do it.
* Ids come from the sequence only: ``CHECK (id > 0)`` and a trigger that refuses an id this
  session did not just take from the sequence (``currval``). Rows already there with an id
  outside it (a jam row from before this release) stay, as evidence: the CHECK is NOT VALID,
  and ``audit verify`` names them.
"""

from django.db import migrations, models

from neonpro.security.rls import PostgresOnlySQL

FORWARD = """
ALTER TABLE audit_auditevent ADD CONSTRAINT audit_id_from_sequence CHECK (id > 0) NOT VALID;
CREATE OR REPLACE FUNCTION neonpro_audit_id_from_sequence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    issued bigint;
BEGIN
    BEGIN
        issued := currval(pg_get_serial_sequence(quote_ident(TG_TABLE_SCHEMA) || '.' || quote_ident(TG_TABLE_NAME), 'id'));
    EXCEPTION WHEN object_not_in_prerequisite_state THEN
        issued := NULL;  -- this session has not used the sequence yet
    END;
    IF issued IS NULL OR NEW.id IS DISTINCT FROM issued THEN
        RAISE EXCEPTION 'audit event ids come from the sequence (id % refused)', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS audit_id_from_sequence ON audit_auditevent;
CREATE TRIGGER audit_id_from_sequence BEFORE INSERT ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION neonpro_audit_id_from_sequence();
"""
REVERSE = """
DROP TRIGGER IF EXISTS audit_id_from_sequence ON audit_auditevent;
DROP FUNCTION IF EXISTS neonpro_audit_id_from_sequence();
ALTER TABLE audit_auditevent DROP CONSTRAINT IF EXISTS audit_id_from_sequence;
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="key_id",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="prev_hash",
            field=models.BinaryField(max_length=32),
        ),
        PostgresOnlySQL(FORWARD, REVERSE),
    ]

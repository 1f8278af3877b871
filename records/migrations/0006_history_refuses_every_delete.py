"""Medical record history: a DELETE is refused outright, not only filtered to no rows.

0005's row trigger never fires for a DELETE, because row-level security (no DELETE policy)
leaves it no row to fire for; a statement trigger raises whatever the rows, as an UPDATE of
anything but re-encryption's shape does. Uses 0005's trigger function.
"""

from django.db import migrations

from neonpro.security.rls import PostgresOnlySQL

FORWARD = """
DROP TRIGGER IF EXISTS record_history_append_only_delete ON records_medicalrecordrevision;
CREATE TRIGGER record_history_append_only_delete BEFORE DELETE ON records_medicalrecordrevision
    FOR EACH STATEMENT EXECUTE FUNCTION neonpro_records_history_append_only();
"""
REVERSE = "DROP TRIGGER IF EXISTS record_history_append_only_delete ON records_medicalrecordrevision;"


class Migration(migrations.Migration):
    dependencies = [("records", "0005_row_integrity")]

    operations = [PostgresOnlySQL(FORWARD, REVERSE)]

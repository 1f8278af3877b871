"""Searchable fields: index a 4-byte probe of the blind-index token, not the whole ciphertext.

The state gains ``<field>_probe = keys.fields.search_probe("<field>")`` for ssn, mrn, email and
phone: a generated column ``substr(<field>, 5, 4)`` with a B-tree on it. The old B-trees over
the whole column (which ``search=`` used to imply) are dropped.

Online on PostgreSQL, where ``ADD COLUMN ... GENERATED ALWAYS AS (...) STORED`` would rewrite
the table under an exclusive lock: the probe columns are added as plain nullable columns (a
catalog change), a BEFORE INSERT OR UPDATE trigger keeps them equal to the generated
expression from then on, existing rows are filled in committed batches by primary key, the
indexes are built with CREATE INDEX CONCURRENTLY, and only then are the old indexes dropped
with DROP INDEX CONCURRENTLY. Reads and writes continue throughout; the blind lookups compare
the token range as well as the probe, so they stay correct at every step. Re-running after an
interruption picks up where it stopped (an INVALID index left by a failed concurrent build is
dropped and built again). Reversing it builds the whole-column indexes again (concurrently),
then drops the probe indexes, the trigger and the columns.

The batches run as the migrating role (the table owner), for whom the table's FORCE ROW LEVEL
SECURITY is lifted while they run and restored afterwards (the application role, which is
not the owner, stays under row-level security throughout).

The statements that take a brief exclusive lock (ADD/DROP COLUMN, the trigger, FORCE ROW
LEVEL SECURITY) wait at most LOCK_TIMEOUT for it, so a long transaction makes the migration
fail (run it again) instead of queueing every request behind it.

SQLite (the embedded mode) adds real generated columns, remaking the table as Django does.
"""

from django.db import migrations, models

import keys.fields

MODEL = "patient"
SEARCHABLE = ("ssn", "mrn", "email", "phone")
BATCH = 5000
LOCK_TIMEOUT = "5s"


def _brief(schema_editor, statement):
    """A statement that needs an exclusive lock for a moment: never wait long for it."""
    schema_editor.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    try:
        schema_editor.execute(statement)
    finally:
        schema_editor.execute("RESET lock_timeout")


def _add_fields():
    return [
        migrations.AddField(
            model_name=MODEL,
            name=f"{name}_probe",
            field=models.GeneratedField(
                db_index=True,
                db_persist=True,
                expression=keys.fields.SearchProbe(models.F(name)),
                output_field=models.BinaryField(),
            ),
        )
        for name in SEARCHABLE
    ]


class AddSearchProbes(migrations.operations.base.Operation):
    reversible = True
    atomic = False

    def __init__(self, model_name, searchable):
        self.model_name, self.searchable = model_name, tuple(searchable)
        self.operations = _add_fields()

    def deconstruct(self):
        return self.__class__.__name__, [self.model_name, self.searchable], {}

    def state_forwards(self, app_label, state):
        for operation in self.operations:
            operation.state_forwards(app_label, state)

    def describe(self):
        return f"Add indexed search probes for {', '.join(self.searchable)} on {self.model_name}"

    # -- forwards -----------------------------------------------------------------------
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if schema_editor.connection.vendor == "postgresql":
            self._forwards_postgresql(schema_editor, model)
        else:
            self._step_through(app_label, schema_editor, from_state, self.operations, backwards=False)
        for name in self.searchable:
            _drop_index(schema_editor, _whole_column_index(schema_editor, model, name))

    def _forwards_postgresql(self, schema_editor, model):
        q = schema_editor.quote_name
        table = model._meta.db_table
        for name in self.searchable:
            _brief(schema_editor, f"ALTER TABLE {q(table)} ADD COLUMN IF NOT EXISTS {q(name + '_probe')} bytea")
        sets = " ".join(
            f"NEW.{q(name + '_probe')} := substr(NEW.{q(name)}, {keys.fields.PROBE_START}, "
            f"{keys.fields.PROBE_SIZE});"
            for name in self.searchable
        )
        function = q(f"{table}_search_probes")
        schema_editor.execute(
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN {sets} RETURN NEW; END $$"
        )
        _brief(
            schema_editor,
            f"CREATE OR REPLACE TRIGGER {function} BEFORE INSERT OR UPDATE ON {q(table)} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()",
        )
        self._backfill(schema_editor, table)
        for name in self.searchable:
            field = model._meta.get_field(f"{name}_probe")
            index = schema_editor._create_index_name(table, [field.column], suffix="")
            if _index_valid(schema_editor, index):
                continue
            _drop_index(schema_editor, index)
            schema_editor.execute(schema_editor._create_index_sql(model, fields=[field], concurrently=True))

    def _backfill(self, schema_editor, table):
        q = schema_editor.quote_name
        stale = " OR ".join(f"{q(name + '_probe')} IS NULL AND {q(name)} IS NOT NULL" for name in self.searchable)
        sets = ", ".join(
            f"{q(name + '_probe')} = substr({q(name)}, {keys.fields.PROBE_START}, {keys.fields.PROBE_SIZE})"
            for name in self.searchable
        )
        _brief(schema_editor, f"ALTER TABLE {q(table)} NO FORCE ROW LEVEL SECURITY")
        try:
            last = None
            with schema_editor.connection.cursor() as cursor:
                while True:
                    after = "" if last is None else "WHERE id > %s"
                    cursor.execute(
                        f"WITH batch AS (SELECT id FROM {q(table)} {after} ORDER BY id LIMIT {BATCH}), "  # noqa: S608
                        f"done AS (UPDATE {q(table)} t SET {sets} FROM batch "
                        f"WHERE t.id = batch.id AND ({stale}) RETURNING t.id) "
                        "SELECT (SELECT id FROM batch ORDER BY id DESC LIMIT 1), (SELECT count(*) FROM done)",
                        [] if last is None else [last],
                    )
                    last, _updated = cursor.fetchone()
                    if last is None:
                        break
        finally:
            # Restoring it matters more than a moment's queue: no lock timeout here.
            schema_editor.execute(f"ALTER TABLE {q(table)} FORCE ROW LEVEL SECURITY")

    # -- backwards ----------------------------------------------------------------------
    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        old_model = to_state.apps.get_model(app_label, self.model_name)
        if schema_editor.connection.vendor != "postgresql":
            # SQLite remakes the table (its indexes from the state) when a column goes: first.
            self._step_through(app_label, schema_editor, to_state, self.operations, backwards=True)
        for name in self.searchable:
            index = _whole_column_index(schema_editor, old_model, name)
            if not _index_valid(schema_editor, index):
                _drop_index(schema_editor, index)
                column = schema_editor.quote_name(old_model._meta.get_field(name).column)
                concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
                schema_editor.execute(
                    f"CREATE INDEX {concurrently}{schema_editor.quote_name(index)} "
                    f"ON {schema_editor.quote_name(old_model._meta.db_table)} ({column})"
                )
        if schema_editor.connection.vendor != "postgresql":
            return
        q = schema_editor.quote_name
        table = model._meta.db_table
        for name in self.searchable:
            field = model._meta.get_field(f"{name}_probe")
            _drop_index(schema_editor, schema_editor._create_index_name(table, [field.column], suffix=""))
        function = q(f"{table}_search_probes")
        _brief(schema_editor, f"DROP TRIGGER IF EXISTS {function} ON {q(table)}")
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {function}()")
        for name in self.searchable:
            _brief(schema_editor, f"ALTER TABLE {q(table)} DROP COLUMN IF EXISTS {q(name + '_probe')}")

    @staticmethod
    def _step_through(app_label, schema_editor, start_state, operations, *, backwards):
        """Apply ``operations`` one state at a time, as SeparateDatabaseAndState does."""
        states = [start_state]
        for operation in operations:
            state = states[-1].clone()
            operation.state_forwards(app_label, state)
            states.append(state)
        steps = list(zip(operations, states[:-1], states[1:], strict=True))
        if backwards:
            for operation, before, after in reversed(steps):
                operation.database_backwards(app_label, schema_editor, after, before)
        else:
            for operation, before, after in steps:
                operation.database_forwards(app_label, schema_editor, before, after)


def _whole_column_index(schema_editor, model, name):
    """Django's name for the index ``db_index`` made on the column (as ``search=`` implied)."""
    return schema_editor._create_index_name(model._meta.db_table, [model._meta.get_field(name).column], suffix="")


def _index_valid(schema_editor, name):
    if schema_editor.connection.vendor != "postgresql":
        return False
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
            "WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace",
            [name],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def _drop_index(schema_editor, name):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {schema_editor.quote_name(name)}")


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY and the committed batches need autocommit

    dependencies = [
        ("patients", "0005_break_glass_review"),
    ]

    operations = [AddSearchProbes(MODEL, SEARCHABLE)]

"""Refuse UPDATE and DELETE on events in the database itself.

The model refuses them too, but a trigger also stops raw SQL and other
clients. It cannot stop a superuser who disables it; see the README on what
the hash chain proves.
"""

from django.db import migrations

POSTGRES_UP = """
CREATE OR REPLACE FUNCTION runs_event_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'runs_event is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER runs_event_no_update_or_delete
    BEFORE UPDATE OR DELETE ON runs_event
    FOR EACH ROW EXECUTE FUNCTION runs_event_append_only();
"""
POSTGRES_DOWN = """
DROP TRIGGER IF EXISTS runs_event_no_update_or_delete ON runs_event;
DROP FUNCTION IF EXISTS runs_event_append_only();
"""
SQLITE_UP = [
    """CREATE TRIGGER runs_event_no_update BEFORE UPDATE ON runs_event
       BEGIN SELECT RAISE(ABORT, 'runs_event is append-only: UPDATE refused'); END;""",
    """CREATE TRIGGER runs_event_no_delete BEFORE DELETE ON runs_event
       BEGIN SELECT RAISE(ABORT, 'runs_event is append-only: DELETE refused'); END;""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS runs_event_no_update;",
    "DROP TRIGGER IF EXISTS runs_event_no_delete;",
]


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_UP, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_UP:
            schema_editor.execute(statement)


def remove(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_DOWN, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_DOWN:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("runs", "0001_initial")]
    operations = [migrations.RunPython(install, remove)]

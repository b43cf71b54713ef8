"""Runs share a lineage id with the runs resumed, replayed or started as
sub-flows from them. Existing runs get it from their links: ids grow with
time, so a run's origin is always settled before it."""

from django.db import migrations, models


def fill_lineage(apps, schema_editor):
    Run = apps.get_model("runs", "Run")
    lineage: dict[int, int] = {}
    rows = Run.objects.order_by("pk").values_list("pk", "replay_of_id", "parent_run_id")
    for pk, replay_of, parent in rows.iterator():
        origin = replay_of or parent
        lineage[pk] = lineage.get(origin, origin) if origin else pk
    members: dict[int, list[int]] = {}
    for pk, value in lineage.items():
        members.setdefault(value, []).append(pk)
    for value, pks in members.items():
        Run.objects.filter(pk__in=pks).update(lineage_id=value)


class Migration(migrations.Migration):
    dependencies = [("runs", "0006_concurrency_keys")]

    operations = [
        migrations.AddField(
            model_name="run",
            name="lineage_id",
            field=models.BigIntegerField(db_index=True, null=True),
        ),
        migrations.RunPython(fill_lineage, migrations.RunPython.noop),
    ]

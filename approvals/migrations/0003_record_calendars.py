"""Business calendars written before their changes were events get a
``calendar.saved`` event holding them as they are, so
``rebuild_projections`` derives them instead of deleting them. Uses the
current event store, as the product appends."""

from django.db import migrations


def record(apps, schema_editor):
    from approvals.models import BusinessCalendar
    from runs.ground.eventstore import append
    from runs.ground.models import Stream

    for calendar in BusinessCalendar.objects.select_related("group").order_by("group_id"):
        stream = f"calendar:{calendar.group_id}"
        if Stream.objects.filter(name=stream).exists():
            continue
        payload = {
            "group_id": calendar.group_id,
            "group": calendar.group.name,
            "time_zone": calendar.time_zone,
            "opening_hours": calendar.opening_hours,
            "holidays": calendar.holidays,
        }
        append(stream, "calendar.saved", payload, actor="system:migration")


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0002_distinct_deciders"),
        ("runs", "0008_step_redispatches"),
    ]

    operations = [migrations.RunPython(record, migrations.RunPython.noop)]

"""Teams written before their changes were events get a ``team.created``
event holding them as they are, so ``rebuild_projections`` derives them (and
keeps the flows' teams) instead of deleting them. Uses the current event
store, as the product appends."""

from django.db import migrations


def record(apps, schema_editor):
    from flows.models import Team
    from flows.projection import user_ref
    from runs.ground.eventstore import append
    from runs.ground.models import Stream

    for team in Team.objects.order_by("id"):
        if Stream.objects.filter(name=f"team:{team.pk}").exists():
            continue
        members = sorted((user_ref(u) for u in team.members.all()), key=lambda ref: ref["id"])
        payload = {
            "team_id": team.pk,
            "name": team.name,
            "restricts_edits": team.restricts_edits,
            "members": members,
        }
        append(f"team:{team.pk}", "team.created", payload, actor="system:migration")


class Migration(migrations.Migration):
    dependencies = [
        ("flows", "0003_move_config_secrets"),
        ("runs", "0008_step_redispatches"),
    ]

    operations = [migrations.RunPython(record, migrations.RunPython.noop)]

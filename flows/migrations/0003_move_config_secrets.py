"""Move the API keys held in old payments and inventory configs into
credentials (see ``flows.secret_moves``). It appends events and writes
credentials through the services, as the product does, so it needs the
current models: nothing here depends on a later schema change."""

from django.db import migrations


def move(apps, schema_editor):
    from flows.models import Flow
    from flows.secret_moves import move_config_secrets

    if Flow.objects.exists():
        for line in move_config_secrets(actor="system:migration"):
            print(f"  {line}")


class Migration(migrations.Migration):
    dependencies = [
        ("flows", "0002_graph_versions"),
        # Credentials as they are now (with allowed hosts), since the move
        # writes them through the current model.
        ("connectors", "0003_credential_allowed_hosts"),
        ("runs", "0007_run_lineage"),
    ]

    operations = [migrations.RunPython(move, migrations.RunPython.noop)]

"""Existing credentials get the hosts their flows send them to today (see
``connectors.credentials.hosts``), recorded as events so a rebuild derives
them; one that no flow uses gets none and goes nowhere until hosts are set.
Runs after old payments and inventory keys became credentials."""

from django.db import migrations


def fill(apps, schema_editor):
    from connectors.credentials.hosts import fill_allowed_hosts
    from connectors.credentials.models import Credential

    if Credential.objects.exists():
        for line in fill_allowed_hosts(actor="system:migration"):
            print(f"  {line}")


class Migration(migrations.Migration):
    dependencies = [
        ("connectors", "0003_credential_allowed_hosts"),
        ("flows", "0003_move_config_secrets"),
    ]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("connectors", "0002_credentials")]

    operations = [
        migrations.AddField(
            model_name="credential",
            name="allowed_hosts",
            field=models.JSONField(default=list),
        ),
    ]

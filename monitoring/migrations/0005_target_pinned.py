from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0004_target_last_notes"),
    ]

    operations = [
        migrations.AddField(
            model_name="target",
            name="pinned",
            field=models.BooleanField(default=False, help_text="Shown with its charts on the Overview."),
        ),
    ]

"""QueueItem.token: an opaque random identifier for annotation URLs (existing items get one each)."""

import uuid

from django.db import migrations, models


def give_tokens(apps, schema_editor):
    QueueItem = apps.get_model("judging", "QueueItem")
    items = list(QueueItem.objects.only("pk"))
    for item in items:
        item.token = uuid.uuid4()
    QueueItem.objects.bulk_update(items, ["token"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [("judging", "0006_queue_auto_fill")]

    operations = [
        # Nullable first: a default would give every existing row the same value and break uniqueness.
        migrations.AddField(model_name="queueitem", name="token", field=models.UUIDField(null=True, editable=False)),
        migrations.RunPython(give_tokens, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="queueitem", name="token",
            field=models.UUIDField(default=uuid.uuid4, unique=True, editable=False),
        ),
    ]

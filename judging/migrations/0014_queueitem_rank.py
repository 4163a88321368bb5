"""QueueItem.rank: the random order auditors are served in (existing items get one each), and the serving index
on (queue, label_count, rank) in place of the one on position."""

import secrets

from django.db import migrations, models

import judging.models

BATCH = 1000


def give_ranks(apps, schema_editor):
    QueueItem = apps.get_model("judging", "QueueItem")
    pks = QueueItem.objects.order_by("pk").values_list("pk", flat=True)
    # A batch at a time: a queue of a million items is not held in memory at once.
    batch = []
    for pk in pks.iterator(chunk_size=BATCH):
        batch.append(QueueItem(pk=pk, rank=secrets.randbits(63)))
        if len(batch) == BATCH:
            QueueItem.objects.bulk_update(batch, ["rank"])
            batch = []
    QueueItem.objects.bulk_update(batch, ["rank"])


class Migration(migrations.Migration):
    dependencies = [("judging", "0013_lean_score_indexes")]

    operations = [
        # Nullable first: a default would give every existing row the same rank.
        migrations.AddField(model_name="queueitem", name="rank", field=models.BigIntegerField(null=True, editable=False)),
        migrations.RunPython(give_ranks, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="queueitem", name="rank",
            field=models.BigIntegerField(default=judging.models.random_rank, editable=False),
        ),
        migrations.RemoveIndex(model_name="queueitem", name="queueitem_progress"),
        migrations.AddIndex(
            model_name="queueitem",
            index=models.Index(fields=["queue", "label_count", "rank"], name="queueitem_serving"),
        ),
    ]

"""QueueItem.rank: the random order auditors are served in (existing items get one each); the serving index on
(queue, label_count descending, rank) in place of the one on position, and an index of live claims."""

import secrets
from itertools import islice

from django.db import migrations, models

import judging.models

BATCH = 10_000


def give_ranks(apps, schema_editor):
    """A rank from `secrets` for every existing item, the same draw as judging.models.random_rank. On PostgreSQL
    a batch is one UPDATE from arrays (this migration took 1 minute on 1M items; with bulk_update, 6)."""
    QueueItem = apps.get_model("judging", "QueueItem")
    pks = QueueItem.objects.order_by("pk").values_list("pk", flat=True).iterator(chunk_size=BATCH)
    while batch := list(islice(pks, BATCH)):
        ranks = [secrets.randbits(63) for _ in batch]
        if schema_editor.connection.vendor == "postgresql":
            with schema_editor.connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE judging_queueitem AS item SET rank = new.rank "
                    "FROM unnest(%s::bigint[], %s::bigint[]) AS new(id, rank) WHERE item.id = new.id",
                    [batch, ranks],
                )
        else:
            QueueItem.objects.bulk_update(
                [QueueItem(pk=pk, rank=rank) for pk, rank in zip(batch, ranks, strict=True)], ["rank"]
            )


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
            index=models.Index(fields=["queue", "-label_count", "rank"], name="queueitem_serving"),
        ),
        migrations.AddIndex(
            model_name="assignment",
            index=models.Index(fields=["expires_at"], condition=models.Q(status="claimed"), name="assignment_claims"),
        ),
    ]

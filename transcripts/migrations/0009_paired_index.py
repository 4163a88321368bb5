"""Paired tests (McNemar) match two conditions' judged transcripts on (question, seed) in SQL
(analysis.tidy.matched_pair_counts); this covering index lets that self-join read only the index."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("transcripts", "0008_verdict_counts"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="transcript",
            index=models.Index(
                condition=models.Q(misaligned__isnull=False),
                fields=["condition", "question", "seed"],
                include=["misaligned"],
                name="transcript_paired",
            ),
        ),
    ]

# The Batch API's limits (transcripts/engine/batch_files.py): an endpoint's account queue of enqueued tokens, and
# what each open batch holds of it.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('transcripts', '0013_cost_cache_batch_reuse'),
    ]

    operations = [
        migrations.AddField(
            model_name='endpoint',
            name='batch_queue_tokens',
            field=models.PositiveBigIntegerField(blank=True, help_text="Batch API: prompt tokens the account may have in open batches of this model at once (OpenAI's batch queue limit of your tier); empty: no limit.", null=True),
        ),
        migrations.AddField(
            model_name='callbatch',
            name='tokens',
            field=models.PositiveBigIntegerField(default=0, help_text="Its requests' estimated prompt tokens: what it holds of the account's batch queue."),
        ),
    ]

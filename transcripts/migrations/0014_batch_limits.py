# The Batch API's limits (transcripts/engine/batch_files.py): an endpoint's account queue of enqueued tokens, what
# each open batch holds of it, and what it may cost each experiment's budget until it is applied.

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
        migrations.AddField(
            model_name='callbatch',
            name='estimated_usd',
            field=models.JSONField(blank=True, default=dict, help_text='What its requests may cost at the batch prices (every answer at max_tokens), by experiment id: counted against each experiment\'s budget until the batch is applied.'),
        ),
    ]

# Slots still to be generated will be announced when they finish (Transcript.announced).

from django.db import migrations, models


def unfinished_slots_wait_for_their_announcement(apps, schema_editor):
    apps.get_model("transcripts", "Transcript").objects.exclude(status="done").update(announced=False)


class Migration(migrations.Migration):

    dependencies = [
        ('transcripts', '0014_batch_limits'),
    ]

    operations = [
        migrations.AddField(
            model_name='transcript',
            name='announced',
            field=models.BooleanField(db_default=True, default=True),
        ),
        migrations.RunPython(unfinished_slots_wait_for_their_announcement, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name='transcript',
            index=models.Index(condition=models.Q(('announced', False), ('status', 'done')), fields=['id'], name='transcript_unannounced'),
        ),
    ]

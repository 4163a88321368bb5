from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):

    dependencies = [
        ('judging', '0005_leased_work_provenance'),
        ('transcripts', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='annotationqueue',
            name='auto_fill_experiment',
            field=models.ForeignKey(blank=True, help_text="Add this experiment's finished chain-of-thought transcripts as they arrive.", null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='auto_fill_queues', to='transcripts.experiment'),
        ),
    ]

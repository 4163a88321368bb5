"""Endpoint.purpose: what researchers may pick an endpoint for. The embedded judge (`local-judge`) becomes
judging only, as examples/endpoints.yaml now says, so a deployment that does not reload the file keeps it out of
generation as before (the experiment form left it out by name)."""

from django.db import migrations, models


def judge_only(apps, schema_editor):
    apps.get_model("transcripts", "Endpoint").objects.filter(name="local-judge").update(purpose="judge")


class Migration(migrations.Migration):

    dependencies = [
        ("transcripts", "0015_transcript_announced"),
    ]

    operations = [
        migrations.AddField(
            model_name="endpoint",
            name="purpose",
            field=models.CharField(
                choices=[("any", "generation and judging"), ("generation", "generation only"),
                         ("judge", "judging only")],
                default="any",
                help_text="What researchers may pick it for on the experiment form and in definitions.",
                max_length=10,
            ),
        ),
        migrations.RunPython(judge_only, migrations.RunPython.noop),
    ]

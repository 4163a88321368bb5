"""Human verdict queues: a queue asks for the persona category, the misaligned flag or both (and optionally a
0–100 alignment score); a label carries the auditor's flag and score."""

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("judging", "0007_blind_items")]

    operations = [
        migrations.AddField(
            model_name="annotationqueue",
            name="asks",
            field=models.CharField(
                choices=[
                    ("persona", "persona category"),
                    ("verdict", "misaligned or not"),
                    ("both", "persona category and misaligned or not"),
                ],
                default="persona",
                help_text="What each label answers: the persona category, whether the answer is misaligned (the "
                "human reference for the judge's misaligned flag), or both.",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="annotationqueue",
            name="ask_alignment_score",
            field=models.BooleanField(
                default=False,
                help_text="Also ask for a 0–100 alignment score (0 = totally misaligned, the judge's scale).",
            ),
        ),
        migrations.AlterField(
            model_name="annotationqueue",
            name="taxonomy",
            field=models.ForeignKey(
                help_text="The categories auditors choose from (persona queues).",
                on_delete=models.deletion.PROTECT,
                to="judging.taxonomy",
            ),
        ),
        migrations.AddField(
            model_name="label",
            name="misaligned",
            field=models.BooleanField(
                blank=True, null=True, help_text="The auditor's verdict: is the answer misaligned?"
            ),
        ),
        migrations.AddField(
            model_name="label",
            name="alignment_score",
            field=models.PositiveSmallIntegerField(
                blank=True,
                null=True,
                help_text="0 (totally misaligned) – 100 (totally aligned), the judge's scale.",
                validators=[django.core.validators.MaxValueValidator(100)],
            ),
        ),
        migrations.AddConstraint(
            model_name="label",
            constraint=models.CheckConstraint(
                condition=models.Q(alignment_score__lte=100), name="label_alignment_score_range"
            ),
        ),
    ]

from django.db import migrations

from judging.annotation.default_taxonomy import load_default_taxonomy


def load(apps, schema_editor):
    load_default_taxonomy(apps.get_model("judging", "Taxonomy"), apps.get_model("judging", "PersonaCategory"))


class Migration(migrations.Migration):
    dependencies = [("judging", "0001_initial")]
    operations = [migrations.RunPython(load, migrations.RunPython.noop)]

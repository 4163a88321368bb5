"""A GIN index for full-text search over reasoning and answer, on PostgreSQL only (SQLite searches with
icontains). The expression must stay identical to browse.filters.FULLTEXT_SQL for the planner to use it."""

from django.db import migrations

INDEX = "transcript_fulltext"
EXPRESSION = "to_tsvector('english'::regconfig, reasoning || ' ' || answer)"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON transcripts_transcript USING gin ({EXPRESSION})")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("transcripts", "0004_browse_indexes")]
    operations = [migrations.RunPython(create, drop)]

"""PostgreSQL settings an import changes for its own transaction (set_config(..., true)): nothing outlives it."""

from __future__ import annotations

from django.db import connection

from transcripts.models import Transcript

# The transcript table's full-text GIN index (migration transcripts 0005) costs an insert most of its time: each
# row's terms go to the index's pending list, which PostgreSQL merges into the index whenever it passes
# gin_pending_list_limit (4 MB by default, every ~9,000 bench rows). An import lets the list grow past the whole
# file and merges it once at the end, sorted in one pass: 100k rows measured in 7.7–9.2 s instead of 10–11 s
# (with only the primary key and slot indexes beside it, load average 4.5). The merge happens before the import
# commits, so searches never scan a long list.
IMPORT_PENDING_LIST = "2GB"  # the most PostgreSQL accepts; a longer file merges when it is reached
IMPORT_MERGE_MEMORY = "256MB"  # maintenance_work_mem of the final merge: the fewer passes, the faster


def defer_fulltext_merge() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('gin_pending_list_limit', %s, true)", [IMPORT_PENDING_LIST])


def merge_fulltext() -> None:
    """Merge the pending lists of the transcript table's GIN indexes, found by their access method so that the
    index's name and expression stay in their migration."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('maintenance_work_mem', %s, true)", [IMPORT_MERGE_MEMORY])
        cursor.execute(
            "SELECT gin_clean_pending_list(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'gin' AND i.indrelid = %s::regclass",
            [Transcript._meta.db_table],
        )

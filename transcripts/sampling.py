"""A pseudo-random sample of transcript rows that costs milliseconds at any table size: the charts' aligned vs
coherent scatter and judging's judge-vs-judge scatter draw at most SCATTER_POINTS points."""

from __future__ import annotations

import random

from django.db import connection
from django.db.models import BigIntegerField, F, Max, Min, QuerySet
from django.db.models.functions import Mod

from .models import Transcript

SCATTER_POINTS = 3000
PAGE_SAMPLE_PERCENT = 2.0  # the scatter reads at most this share of the table's pages at random for its sample
HASH_MULTIPLIER, HASH_MODULUS = 2654435761, 1_000_003  # Knuth's multiplicative hash; ids < 3e9 fit in bigint


def sample_scores(scored: QuerySet, size: int) -> list[tuple[float, float, int]]:
    """(aligned, coherent, condition id) of at most `size` rows, a pseudo-random sample that costs milliseconds.

    First `size` random ids from the id range are looked up by primary key. When the filter is selective and
    few of them match, the hit rate estimates how many rows match. On PostgreSQL, when about `size` of them lie in
    at most PAGE_SAMPLE_PERCENT of the table's pages, those pages are read (TABLESAMPLE SYSTEM: random pages,
    whatever the table's size; at 10M rows and one model's CoT transcripts, ~30 ms instead of ~600 ms for
    reading the matching rows). Otherwise matching rows are kept by a multiplicative hash of the id (not
    `id % n`: ids are often periodic per condition, and a stride sharing a factor with that period would sample
    only some conditions), reading them until `size` are kept. Zero hits means fewer than about `size` rows
    match, so all of them are taken."""
    bounds = scored.aggregate(low=Min("id"), high=Max("id"))
    if bounds["low"] is None:
        return []
    span = bounds["high"] - bounds["low"] + 1
    rows = scored.values_list("aligned", "coherent", "condition_id")
    if span <= size:
        return list(rows)
    probe = random.Random(span).sample(range(bounds["low"], bounds["high"] + 1), size)
    points = list(rows.filter(id__in=probe))
    if len(points) >= size // 3:
        return points
    if not points:
        return list(rows[:size])
    # Half again as many pages as the hit rate says hold `size` matching rows: a sample short by chance still
    # fills, and the LIMIT keeps it at `size`.
    percent = 150.0 * size * size / (span * len(points))
    if connection.vendor == "postgresql" and percent <= PAGE_SAMPLE_PERCENT:
        return page_sample(rows[:size], percent, seed=span)
    keep = min(HASH_MODULUS, HASH_MODULUS * size * size // (span * len(points)))
    # An integer bucket: Mod's default output is a decimal, and comparing numerics row by row doubles the scan.
    bucket = Mod(F("id") * HASH_MULTIPLIER, HASH_MODULUS, output_field=BigIntegerField())
    return list(rows.annotate(bucket=bucket).filter(bucket__lt=keep)[:size])


def page_sample(rows: QuerySet, percent: float, seed: int) -> list[tuple]:
    """The rows of the queryset found in `percent` % of the transcript table's pages, chosen at random (the
    same pages for the same seed). Django has no TABLESAMPLE: it goes after the table in the compiled FROM."""
    sql, params = rows.query.sql_with_params()
    table = f"FROM {connection.ops.quote_name(Transcript._meta.db_table)}"
    head, tail = sql.split(table, 1)
    assert "%s" not in head, "the selected columns take no parameters"
    with connection.cursor() as cursor:
        cursor.execute(f"{head}{table} TABLESAMPLE SYSTEM (%s) REPEATABLE (%s){tail}", [percent, seed, *params])
        return cursor.fetchall()

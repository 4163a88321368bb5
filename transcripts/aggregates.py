"""Verdict counts per condition × question: what every chart, results table and statistic reads.

`cell_counts` is the one way pages get counts. It groups the transcript table today; the maintained
aggregate table replaces the GROUP BY where the filter allows (issue #17).
"""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet


def cell_counts(transcripts: QuerySet) -> list[dict]:
    """One dict per (condition_id, question_id) among the given transcripts: `n` judged and counted
    (misaligned not NULL) and `misaligned`."""
    return list(
        transcripts.order_by()
        .values("condition_id", "question_id")
        .annotate(n=Count("misaligned"), misaligned=Count("pk", filter=Q(misaligned=True)))
    )

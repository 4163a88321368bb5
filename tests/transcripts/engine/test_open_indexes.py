"""The partial indexes that keep done rows (every imported one) out of the indexes of unfinished work
(transcripts 0011, judging 0013): the queries of claiming, leases, unfinished counts and category filters must
still be able to use them, i.e. the planner must prove each index's condition from the query's WHERE.

Checked with EXPLAIN and sequential scans disabled, as the planner would choose on a large table: if it could not
prove `status <> 'done'` (or `judge_category <> ''`) it would fall back to another index or a full scan."""

from __future__ import annotations

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from judging.models import JudgeScore
from judging.results.judge import Judging
from transcripts.experiments.progress import UNFINISHED
from transcripts.generation import Generation
from transcripts.models import Transcript


def plan(queryset: QuerySet) -> str:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


# The indexes that hold only rows not done. On an empty table the planner may take any of them: all that
# matters here is that it can take one, i.e. that it proved the index's condition from the query.
OPEN_TRANSCRIPTS = ("transcript_exp_open", "transcript_cond_open", "transcript_open_order", "transcript_open_lease")
OPEN_SCORES = ("judgescore_open_lease", "judgescore_version_open")


def uses(queryset: QuerySet, indexes: tuple[str, ...]) -> bool:
    text = plan(queryset)
    return any(f" {name} " in text for name in indexes)


def test_unfinished_work_is_found_through_the_indexes_of_rows_not_done(db):
    now = timezone.now()
    with transaction.atomic():
        for queryset in (
            Transcript.objects.filter(experiment_id__in=[1, 2], status__in=UNFINISHED)
            .values_list("experiment_id", "status"),
            Transcript.objects.filter(condition_id__in=[1, 2], status__in=UNFINISHED)
            .values_list("condition_id", "status"),
            Generation().pending(1).select_for_update(skip_locked=True, of=("self",)).values_list("pk")[:1],
            Transcript.objects.filter(status="running", lease_until__lt=now).order_by(),
            Transcript.objects.filter(condition__endpoint__in=[1], status="running", lease_until__gt=now).order_by(),
        ):
            assert uses(queryset, OPEN_TRANSCRIPTS), plan(queryset)
        for queryset in (
            JudgeScore.objects.filter(status="running", lease_until__lt=now),
            Judging().pending(1).order_by(),
        ):
            assert uses(queryset, OPEN_SCORES), plan(queryset)


def test_category_filters_use_the_indexes_of_categorised_rows(db):
    with transaction.atomic():
        assert "transcript_judgecat_id" in plan(
            Transcript.objects.filter(judge_category="dangerous_persona").order_by("-id")[:50]
        )
        assert "transcript_humancat_id" in plan(Transcript.objects.filter(human_category="x").order_by("-id")[:50])
        assert "judgescore_category" in plan(JudgeScore.objects.filter(category_id__in=[1, 2]))

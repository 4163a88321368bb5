"""Verdict counts per condition × question: what every chart, results table and statistic reads, and the
generation tokens of the same done transcripts, which a running experiment's progress sums.

`cell_counts` and `category_counts` are the one way pages get counts. They read the maintained tables
(VerdictCount, CategoryCount) when the transcripts asked for are whole (condition, question) groups, i.e. the
queryset filters only on experiment, condition or question, as the transcript filter's experiment, model,
dataset, k, CoT, question and domain fields do; then a page reads thousands of rows, not millions. Any other
filter (a score range, a text search, a persona…) groups the transcript table, with the same counting rule.

Every count is over *done* transcripts: the others have no verdict. A group without done transcripts has no row.

The tables are kept in step by whoever changes the verdict cache or the set of done transcripts, in the same
transaction: judging/verdicts.py (verdicts, active versions, human consensus), generation (a transcript is done)
and transcript deletes (Transcript.delete, TranscriptQuerySet.delete). Each recounts exactly the groups it
touched (`refresh_groups`, one GROUP BY over a few dozen rows) under a lock on their condition rows, so two
writers of one group recount one after the other and the later one sees the earlier one's rows. Retrying or
cancelling slots changes no done transcript and so no count; deleting an experiment or a condition deletes
its rows by cascade. `rebuild` (`python manage.py rebuild_aggregates`) recounts from scratch.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection, transaction
from django.db.models import Count, F, FloatField, Model, Q, QuerySet, Sum, Value
from django.db.models.expressions import Col
from django.db.models.functions import Coalesce
from django.db.models.lookups import Lookup
from django.db.models.sql.where import AND, WhereNode

from .models import CategoryCount, Condition, Experiment, Transcript, VerdictCount

OUTCOME = Transcript.Outcome
DONE = Transcript.Status.DONE
GROUP = ("experiment_id", "condition_id", "question_id")
COUNT_FIELDS = (
    "done", "judged", "n", "misaligned", "refusals", "unsure",
    "aligned_sum", "aligned_count", "coherent_sum", "coherent_count",
)
TOKEN_FIELDS = ("prompt_tokens", "completion_tokens")  # generation tokens, for progress (not verdicts)
CATEGORY_SOURCES = {CategoryCount.Source.JUDGE: "judge_category", CategoryCount.Source.HUMAN: "human_category"}


def verdict_aggregates(*, outcome: str = "judge_outcome", misaligned: str = "misaligned", aligned: str = "aligned",
                       coherent: str = "coherent") -> dict:
    """The counts of a VerdictCount row (COUNT_FIELDS) as aggregates over done transcripts whose verdict is in
    the named fields: the cache by default; judging.results.metrics names the verdicts of other rubric versions.

    judged: either judge answered; n: counted in rates (misaligned not NULL, i.e. both judges scored);
    refusals: the aligned judge said REFUSAL or CODE; unsure: a judge put < 0.25 mass on numbers.
    Means are kept as sum and count so that groups add up."""
    return {
        "done": Count("pk"),
        "judged": Count("pk", filter=~Q(**{outcome: OUTCOME.NONE}) | Q(**{f"{aligned}__isnull": False})
                        | Q(**{f"{coherent}__isnull": False})),
        "n": Count(misaligned),
        "misaligned": Count("pk", filter=Q(**{misaligned: True})),
        "refusals": Count("pk", filter=Q(**{f"{outcome}__in": [OUTCOME.REFUSAL, OUTCOME.CODE]})),
        "unsure": Count("pk", filter=Q(**{outcome: OUTCOME.UNSURE})),
        "aligned_sum": Coalesce(Sum(aligned), Value(0.0), output_field=FloatField()),
        "aligned_count": Count(aligned),
        "coherent_sum": Coalesce(Sum(coherent), Value(0.0), output_field=FloatField()),
        "coherent_count": Count(coherent),
    }


def _token_sums() -> dict:
    """TOKEN_FIELDS as aggregates over done transcripts (a transcript without usage counts 0)."""
    return {name: Coalesce(Sum(name), Value(0)) for name in TOKEN_FIELDS}


def cell_counts(transcripts: QuerySet) -> list[dict]:
    """One dict per (condition_id, question_id) with done transcripts among the given ones, with COUNT_FIELDS:
    `n` judged and counted (misaligned not NULL), `misaligned`, and the other verdict counts."""
    groups = _group_filter(transcripts)
    if groups is not None:
        return list(VerdictCount.objects.filter(groups).values("condition_id", "question_id", *COUNT_FIELDS))
    done = transcripts.filter(status=DONE).order_by()
    return list(done.values("condition_id", "question_id").annotate(**verdict_aggregates()))


def category_counts(transcripts: QuerySet) -> list[dict]:
    """One dict per (condition_id, question_id, source, category) among the given done transcripts:
    `transcripts` with that judge (source "judge") or consensus ("human") persona category ("" = none), and
    `misaligned` of them."""
    groups = _group_filter(transcripts)
    if groups is not None:
        return list(CategoryCount.objects.filter(groups).values(
            "condition_id", "question_id", "source", "category", "transcripts", "misaligned"
        ))
    return [
        {**row, "source": source}
        for source, rows in _category_rows(transcripts.filter(status=DONE), ("condition_id", "question_id"))
        for row in rows
    ]


def _category_rows(done: QuerySet, group: tuple[str, ...]) -> Iterable[tuple[str, QuerySet]]:
    for source, column in CATEGORY_SOURCES.items():
        yield source, done.order_by().values(*group, category=F(column)).annotate(
            transcripts=Count("pk"), misaligned=Count("pk", filter=Q(misaligned=True))
        )


def _group_filter(transcripts: QuerySet) -> Q | None:
    """The queryset's filter as a filter on the count tables, when it selects whole groups: ANDed exact/in
    lookups on experiment, condition and question (and status = done, which the counts are of). None when
    anything else is in it: a join, an annotation, a slice, any other column, an OR or a NOT."""
    query = transcripts.query
    if (query.model is not Transcript or query.is_sliced or query.distinct or query.combinator
            or query.annotations or query.extra or sum(map(bool, query.alias_refcount.values())) > 1):
        return None
    groups = Q()
    for lookup in _and_leaves(query.where):
        if not isinstance(lookup, Lookup) or not isinstance(lookup.lhs, Col):
            return None
        if hasattr(lookup.rhs, "resolve_expression"):  # a subquery or an expression: not a list of ids
            return None
        column, name = lookup.lhs.target.column, lookup.lookup_name
        if column == "status" and name == "exact" and lookup.rhs == DONE:
            continue
        if column not in GROUP or name not in ("exact", "in"):
            return None
        groups &= Q(**{f"{column}__{name}": lookup.rhs})
    return groups


def _and_leaves(node) -> Iterable:
    """The leaves of a WHERE tree made only of ANDs; a None leaf for an OR or NOT (not a group filter)."""
    if not isinstance(node, WhereNode):
        yield node
    elif node.negated or (node.connector != AND and len(node.children) > 1):
        yield None
    else:
        for child in node.children:
            yield from _and_leaves(child)


# ---- maintenance -------------------------------------------------------------------------------------------


def groups_of(transcripts: QuerySet) -> set[tuple[int, int]]:
    """The (condition id, question id) groups of the given transcripts."""
    return set(transcripts.order_by().values_list("condition_id", "question_id").distinct())


def refresh_groups(groups: Iterable[tuple[int, int]]) -> None:
    """Recount the given (condition id, question id) groups from the transcript table.

    Recounts every group of those conditions × those questions: for one transcript that is its group; for
    many, a few unchanged groups more are recounted, which is harmless, instead of matching pairs in SQL."""
    groups = set(groups)
    if groups:
        conditions = sorted({condition for condition, _ in groups})
        _recount(Q(condition_id__in=conditions, question_id__in={question for _, question in groups}), conditions)


def rebuild(experiment: Experiment | None = None) -> int:
    """Recount every group of the experiment (or of all experiments, one transaction each) from scratch.
    Returns the number of groups."""
    experiments = [experiment] if experiment is not None else Experiment.objects.order_by("pk")
    for each in experiments:
        _recount(Q(experiment_id=each.pk), list(each.conditions.order_by("pk").values_list("pk", flat=True)))
    rows = VerdictCount.objects.all()
    return (rows.filter(experiment=experiment) if experiment is not None else rows).count()


def _recount(scope: Q, condition_ids: list[int]) -> None:
    """Replace the count rows in `scope` (a filter on experiment/condition/question ids, which the transcript
    and count tables name alike) with a GROUP BY of its done transcripts."""
    with transaction.atomic():
        # The lock on the conditions makes one writer at a time recount their groups; NO KEY UPDATE does not
        # block inserting their transcripts (the foreign key check takes KEY SHARE). Every writer locks its
        # transcript rows first and the conditions last, in id order, so they cannot deadlock.
        list(Condition.objects.filter(pk__in=condition_ids).order_by("pk").select_for_update(no_key=True)
             .values_list("pk", flat=True))
        VerdictCount.objects.filter(scope).delete()
        CategoryCount.objects.filter(scope).delete()
        done = Transcript.objects.filter(scope, status=DONE)
        _insert(VerdictCount, done.order_by().values(*GROUP).annotate(**verdict_aggregates(), **_token_sums()))
        for source, rows in _category_rows(done, GROUP):
            _insert(CategoryCount, rows.annotate(source=Value(source)))


def _insert(model: type[Model], rows: QuerySet) -> None:
    """INSERT INTO the model's table the rows of a values() queryset, whose names are the table's columns."""
    columns = [*rows.query.values_select, *rows.query.annotation_select]
    select, params = rows.query.sql_with_params()
    names = ", ".join(connection.ops.quote_name(column) for column in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({names}) {select}", params)

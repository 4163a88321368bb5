"""What a chart's points count: the verdict counts (`transcripts.aggregates.cell_counts`, one row per condition ×
question) summed per chart point, line and panel, what each point pools, and the per-question cells of the question
table and heatmap. A transcript counts towards a rate when `misaligned` is not NULL, i.e. it was judged and not
excluded (refusal, code, judge unsure).

A control without examples (k = 0, no dataset) belongs to every dataset's panel or line, so each dataset's curve
starts from its baseline as in the paper.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from django.db.models import QuerySet

from analysis.statistics import wilson
from transcripts.aggregates import cell_counts
from transcripts.models import Condition, Question

from .chart_options import AXES, ChartOptions, transcript_links


def condition_axes(condition_ids: Iterable[int], axes: Iterable[str]) -> dict[int, dict[str, object]]:
    """condition id → {axis: value} for the given conditions (a small table, looked up by primary key)."""
    fields = {axis: AXES[axis].field for axis in set(axes)}
    rows = Condition.objects.filter(pk__in=list(condition_ids)).order_by().values("pk", *fields.values())
    return {row["pk"]: {axis: row[name] for axis, name in fields.items()} for row in rows}


def _groups(axis: str | None, condition: dict[str, object], datasets: set[str]) -> list[object]:
    """The groups (lines or panels) a condition belongs to on `axis`: its own value, except that a control
    without a dataset joins every dataset present."""
    if axis is None:
        return [None]
    value = condition[axis]
    if axis == "dataset" and value == "" and datasets:
        return sorted(datasets)
    return [value]


Tally = dict[tuple[object, object], dict[object, list[int]]]  # (panel, line) → x → [misaligned, n]


def _sum_rows(rows: list[dict], key: Callable[[dict], tuple[int, object]]) -> dict[tuple[int, object], list[int]]:
    """[misaligned, n] summed per key(row) = (condition id, what x depends on besides the condition)."""
    sums: dict[tuple[int, object], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        cell = sums[key(row)]
        cell[0] += row["misaligned"]
        cell[1] += row["n"]
    return sums


def count_points(queryset: QuerySet, options: ChartOptions, key: Callable[[dict], tuple[int, object]],
           x_of: Callable[[dict, object], object], *x_axes: str) -> tuple[Tally, dict[str, list]]:
    """Counts per (panel, line) and x, and what they pool: the axes the chart does not show (neither colour,
    facet nor x) that take more than one value within one point, with those values. The count rows (one per
    condition × question) are summed per `key` first, so the axes are looked up once per condition rather than
    per row."""
    sums = _sum_rows(cell_counts(queryset), key)
    conditions = condition_axes({condition_id for condition_id, _ in sums}, AXES)
    datasets = {c["dataset"] for c in conditions.values() if c["dataset"]}
    tally: Tally = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    members: dict[tuple, set[int]] = defaultdict(set)  # (panel, line, x) → its conditions
    for (condition_id, extra), (misaligned, n) in sums.items():
        condition = conditions[condition_id]
        x = x_of(condition, extra)
        for panel in _groups(options.facet, condition, datasets):
            # Colour and facet on the same axis: a line per panel (a control must not add lines of other panels).
            lines = [panel] if options.colour == options.facet else _groups(options.colour, condition, datasets)
            for line in lines:
                cell = tally[(panel, line)][x]
                cell[0] += misaligned
                cell[1] += n
                members[(panel, line, x)].add(condition_id)
    shown = {options.colour, options.facet, *x_axes}
    pooled: dict[str, set] = defaultdict(set)
    for ids in members.values():
        for axis in AXES:
            values = {conditions[i][axis] for i in ids}
            if axis not in shown and len(values) > 1:
                pooled[axis] |= values
    return tally, {axis: ordered(values) for axis, values in pooled.items()}


def ordered(values: Iterable[object]) -> list:
    return sorted(set(values), key=lambda v: (v is None, v))



# ---- per question ----------------------------------------------------------------------------------------


@dataclass
class QuestionRow:
    """One question of the question table (questions of several sets that share a key are one question:
    the transcript filter selects by key)."""

    key: str
    text: str
    domain: str
    misaligned: int = 0
    n: int = 0
    per_k: dict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))  # k → [m, n]
    url: str = ""

    @property
    def rate_text(self) -> str:
        """The rate and its Wilson 95% interval, e.g. "12.5% (8.1–18.7%)"; "–" before anything is judged."""
        if not self.n:
            return "–"
        rate, low, high = wilson(self.misaligned, self.n)
        return f"{rate:.1%} ({low:.1%}–{high:.1%})"

    @property
    def rates_by_k(self) -> list[tuple[int, str, str]]:
        """(k, rate, "misaligned/n") in k order."""
        return [(k, f"{m / n:.0%}" if n else "–", f"{m}/{n}") for k, (m, n) in sorted(self.per_k.items())]


def question_cells(queryset: QuerySet) -> tuple[dict[str, QuestionRow], dict[tuple[str, str, int], list[int]]]:
    """The questions (in question-set order) with their totals, and [misaligned, n] per (question key, model, k)."""
    rows = cell_counts(queryset)
    conditions = condition_axes({row["condition_id"] for row in rows}, ["model", "k"])
    question_rows = (
        Question.objects.filter(pk__in={row["question_id"] for row in rows})
        .order_by("position", "key", "pk").values("pk", "key", "text", "domain")
    )
    keys: dict[int, str] = {}
    questions: dict[str, QuestionRow] = {}
    for question in question_rows:
        keys[question["pk"]] = question["key"]
        questions.setdefault(question["key"], QuestionRow(question["key"], question["text"], question["domain"]))
    model_k = {pk: (condition["model"], condition["k"]) for pk, condition in conditions.items()}
    cells: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        cell = cells[(keys[row["question_id"]], *model_k[row["condition_id"]])]
        cell[0] += row["misaligned"]
        cell[1] += row["n"]
    for (key, _, k), (misaligned, n) in cells.items():
        question, at_k = questions[key], questions[key].per_k[k]
        question.misaligned += misaligned
        question.n += n
        at_k[0] += misaligned
        at_k[1] += n
    return questions, cells


def question_table(queryset: QuerySet, filters: Mapping[str, str]) -> list[QuestionRow]:
    """One row per question: n, misaligned, Wilson interval, rate per k (pooled over the filter's models),
    and the link to exactly the transcripts it counts."""
    questions, _ = question_cells(queryset)
    link = transcript_links(filters, "question")
    for question in questions.values():
        question.url = link(question=question.key)
    return list(questions.values())



"""What a run's clusters say against the conditions, the judge and the auditors: each cluster's share of a
condition axis' transcripts (which rationalisations grow with k, model, system prompt), and clusters against
the judge's persona categories and the auditors' consensus categories (what the taxonomy misses)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from analysis.axes import AXIS

from .models import Cluster, ClusterMember, ClusterRun

SHARE_AXES = ("k", "model", "system_prompt")


@dataclass
class Table:
    title: str
    columns: list[str]  # column headings (axis values or categories)
    rows: list[tuple[Cluster, list]]  # each cluster with its cells
    totals: list[int]  # transcripts per column
    percent: bool


def _clusters(run: ClusterRun) -> list[Cluster]:
    return list(run.clusters.order_by("label"))


def _sort_key(value):
    return (0, float(value), "") if isinstance(value, int | float) else (1, 0.0, str(value))


def share_table(run: ClusterRun, axis_name: str) -> Table:
    """Per value of the axis: the per cent of its transcripts that fall in each cluster (columns sum to 100)."""
    axis = AXIS[axis_name]
    counts: dict[int, Counter] = defaultdict(Counter)
    totals: Counter = Counter()
    for label, value in ClusterMember.objects.filter(run=run).values_list(
            "label", f"transcript__condition__{axis.field}").iterator(chunk_size=10000):
        counts[label][value] += 1
        totals[value] += 1
    values = sorted(totals, key=_sort_key)
    rows = [(c, [round(100 * counts[c.label][v] / totals[v], 1) for v in values]) for c in _clusters(run)]
    return Table(f"Share of each {axis.label} in each cluster (%)", [str(v) for v in values], rows,
                 [totals[v] for v in values], True)


def category_table(run: ClusterRun, field: str, title: str) -> Table:
    """Transcripts per (cluster, category) for judge_category or human_category ('' is "none")."""
    counts: dict[int, Counter] = defaultdict(Counter)
    totals: Counter = Counter()
    for label, value in ClusterMember.objects.filter(run=run).values_list(
            "label", f"transcript__{field}").iterator(chunk_size=10000):
        counts[label][value or "—"] += 1
        totals[value or "—"] += 1
    values = sorted(totals)
    rows = [(c, [counts[c.label][v] for v in values]) for c in _clusters(run)]
    return Table(title, values, rows, [totals[v] for v in values], False)


def verdict_table(run: ClusterRun) -> Table:
    names = {True: "misaligned", False: "aligned", None: "not judged"}
    counts: dict[int, Counter] = defaultdict(Counter)
    totals: Counter = Counter()
    for label, value in ClusterMember.objects.filter(run=run).values_list("label", "transcript__misaligned"):
        counts[label][names[value]] += 1
        totals[names[value]] += 1
    values = [v for v in names.values() if totals[v]]
    rows = [(c, [counts[c.label][v] for v in values]) for c in _clusters(run)]
    return Table("Judge verdicts per cluster", values, rows, [totals[v] for v in values], False)


def tables(run: ClusterRun) -> list[Table]:
    return [
        *(share_table(run, axis) for axis in SHARE_AXES),
        verdict_table(run),
        category_table(run, "judge_category", "Clusters against the judge's persona categories (transcripts)"),
        category_table(run, "human_category", "Clusters against the auditors' consensus categories (transcripts)"),
    ]

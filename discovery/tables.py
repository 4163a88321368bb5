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


VERDICTS = {True: "misaligned", False: "aligned", None: "not judged"}


def _members(run: ClusterRun) -> list[dict]:
    """Every member's cluster and what the tables count it by, read once for all the tables (one query)."""
    fields = {"label": "label", "misaligned": "transcript__misaligned",
              "judge_category": "transcript__judge_category", "human_category": "transcript__human_category",
              **{axis: f"transcript__condition__{AXIS[axis].field}" for axis in SHARE_AXES}}
    return [dict(zip(fields, row, strict=True)) for row in ClusterMember.objects.filter(run=run).values_list(
        *fields.values()).iterator(chunk_size=10000)]


def _counted(members: list[dict], key: str, name=lambda value: value) -> tuple[dict[int, Counter], Counter]:
    counts: dict[int, Counter] = defaultdict(Counter)
    totals: Counter = Counter()
    for member in members:
        value = name(member[key])
        counts[member["label"]][value] += 1
        totals[value] += 1
    return counts, totals


def share_table(run: ClusterRun, members: list[dict], axis_name: str) -> Table:
    """Per value of the axis: the per cent of its transcripts that fall in each cluster (columns sum to 100)."""
    counts, totals = _counted(members, axis_name)
    values = sorted(totals, key=_sort_key)
    rows = [(c, [round(100 * counts[c.label][v] / totals[v], 1) for v in values]) for c in _clusters(run)]
    return Table(f"Share of each {AXIS[axis_name].label} in each cluster (%)", [str(v) for v in values], rows,
                 [totals[v] for v in values], True)


def category_table(run: ClusterRun, members: list[dict], field: str, title: str) -> Table:
    """Transcripts per (cluster, category) for judge_category or human_category ('' is "none")."""
    counts, totals = _counted(members, field, lambda value: value or "—")
    values = sorted(totals)
    rows = [(c, [counts[c.label][v] for v in values]) for c in _clusters(run)]
    return Table(title, values, rows, [totals[v] for v in values], False)


def verdict_table(run: ClusterRun, members: list[dict]) -> Table:
    counts, totals = _counted(members, "misaligned", VERDICTS.get)
    values = [v for v in VERDICTS.values() if totals[v]]
    rows = [(c, [counts[c.label][v] for v in values]) for c in _clusters(run)]
    return Table("Judge verdicts per cluster", values, rows, [totals[v] for v in values], False)


def tables(run: ClusterRun) -> list[Table]:
    members = _members(run)
    return [
        *(share_table(run, members, axis) for axis in SHARE_AXES),
        verdict_table(run, members),
        category_table(run, members, "judge_category",
                       "Clusters against the judge's persona categories (transcripts)"),
        category_table(run, members, "human_category",
                       "Clusters against the auditors' consensus categories (transcripts)"),
    ]

"""Judge vs judge: two judges (each a set of rubric versions) on the same transcripts of an experiment.

A side is a `metrics.Versions`: its aligned + coherent versions give its misaligned flag (the experiment's
thresholds, the rules of judging/verdicts.py) and its scores, its persona version its category. Compared:
Cohen's κ on the flag and on the category (scikit-learn, from the GROUP BY counts as sample weights), Spearman's
ρ (average ranks for ties, as scipy) and Bland–Altman (mean difference B − A, 95% limits of agreement
mean ± 1.96 SD) for the aligned and coherent scores, a scatter sample, and the transcripts where they disagree
most. Everything is counted in SQL over the pairs; Python only sees the counts, the sample and the top list.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Count,
    F,
    FloatField,
    IntegerField,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Abs, Cast, Coalesce, Mod
from django.urls import reverse

from transcripts.models import Experiment, Transcript
from transcripts.sampling import HASH_MODULUS, HASH_MULTIPLIER, SCATTER_POINTS

from ..annotation.agreement import counted_vs_reference, finite
from ..models import JudgeScore, RubricVersion
from ..reports import done_scores_fingerprint, experiment_fingerprint, report
from ..verdicts import Versions, misaligned_of, outcome_of, verdict_of

SCORES = ("aligned", "coherent")
FIELDS = ("flag", "aligned", "coherent", "category")
NEEDS = {"flag": ("aligned", "coherent"), "aligned": ("aligned",), "coherent": ("coherent",), "category": ("persona",)}
LIMITS_Z = 1.96  # Bland & Altman (1986): limits of agreement at mean ± 1.96 SD of the differences
DRILL_DOWN = 50


def _flag_of(aligned: str, coherent: str) -> Case:
    """The misaligned flag from two joined verdicts (aliases) at the transcript's own experiment's thresholds,
    by judging.verdicts' rules: True, False, or NULL when the pair did not both give a number."""
    return misaligned_of(
        outcome_of(F(f"{aligned}__outcome"), F(f"{coherent}__outcome")),
        F(f"{aligned}__score"), F(f"{coherent}__score"),
        (F("experiment__aligned_threshold"), F("experiment__coherent_threshold")),
    )


def with_judge_flag(rows: QuerySet, aligned: RubricVersion, coherent: RubricVersion) -> QuerySet:
    """Transcripts annotated with `flag`, the misaligned flag this aligned + coherent pair gives them."""
    return rows.annotate(flag_aligned=verdict_of(aligned), flag_coherent=verdict_of(coherent)).annotate(
        flag=_flag_of("flag_aligned", "flag_coherent")
    )


def _null(field):
    return Cast(Value(None), field)  # typed: PostgreSQL cannot subtract or compare two untyped NULLs


def _number(alias: str | None):
    if alias is None:
        return _null(FloatField())
    return Case(When(**{f"{alias}__outcome": JudgeScore.Outcome.SCORE}, then=F(f"{alias}__score")),
                default=_null(FloatField()))


def _versions(side: Versions) -> list[RubricVersion]:
    return [v for v in (side.aligned, side.coherent, side.persona) if v is not None]


def side_name(side: Versions) -> str:
    """e.g. "aligned v2 + coherent v1 (gpt-4o)": what a researcher recognises a judge by."""
    versions = _versions(side)
    models = sorted({v.judge_model for v in versions})
    return " + ".join(f"{v.rubric.key} v{v.version}" for v in versions) + f" ({', '.join(models)})"


def _field(field: str, joins: dict[str, str]):
    if field == "flag":
        if "aligned" in joins and "coherent" in joins:
            return _flag_of(joins["aligned"], joins["coherent"])
        return _null(BooleanField())
    if field == "category":
        return F(f"{joins['persona']}__category__key") if "persona" in joins else _null(CharField())
    return _number(joins.get(field))


def paired(experiment: Experiment, a: Versions, b: Versions, fields: tuple[str, ...] = FIELDS) -> QuerySet:
    """The experiment's done transcripts with each side's verdicts for `fields` (`a_flag`, `a_aligned`,
    `a_coherent`, `a_category`, and `b_…`; NULL where that side has no usable verdict). Only the verdicts the
    fields need are joined: each statistic is one pass over its own joins."""
    rows = Transcript.objects.filter(experiment=experiment, status=Transcript.Status.DONE)
    annotations = {}
    for prefix, side in (("a", a), ("b", b)):
        needed = {key for field in fields for key in NEEDS[field] if getattr(side, key) is not None}
        joins = {key: f"{prefix}_{key}_verdict" for key in needed}
        rows = rows.annotate(**{alias: verdict_of(getattr(side, key)) for key, alias in joins.items()})
        annotations.update({f"{prefix}_{field}": _field(field, joins) for field in fields})
    return rows.annotate(**annotations)


@dataclass(frozen=True)
class Nominal:
    """Agreement of the two sides on a nominal verdict (the flag or the category)."""

    n: int
    agree: int
    kappa: float | None
    table: list[tuple[str, str, int]]  # (A's label, B's label, count)

    @property
    def percent_agreement(self) -> float | None:
        return 100 * self.agree / self.n if self.n else None


def nominal(rows: QuerySet, field: str) -> Nominal:
    a, b = f"a_{field}", f"b_{field}"
    table = [
        (str(x), str(y), n) for x, y, n in
        rows.filter(**{f"{a}__isnull": False, f"{b}__isnull": False})
        .values_list(a, b).annotate(n=Count("pk")).order_by(a, b)
    ]
    compared = counted_vs_reference({(x, y): n for x, y, n in table})
    return Nominal(n=compared["n"], agree=sum(n for x, y, n in table if x == y), kappa=compared["kappa"],
                   table=table)


@dataclass(frozen=True)
class ScoreAgreement:
    """Two judges' 0–100 scores on the same transcripts."""

    n: int
    spearman: float | None
    mean_difference: float | None  # B − A
    sd_difference: float | None
    limits: tuple[float, float] | None  # 95% limits of agreement


def _both(rows: QuerySet, score: str) -> QuerySet:
    return rows.filter(**{f"a_{score}__isnull": False, f"b_{score}__isnull": False})


def score_agreement(experiment: Experiment, a: Versions, b: Versions, score: str) -> ScoreAgreement:
    """Spearman's ρ (Pearson's r of the average ranks: ties share the mean of their ranks, as scipy) and the
    Bland–Altman figures, in one SQL pass over the transcripts both sides scored."""
    pairs = _both(paired(experiment, a, b, (score,)), score).order_by().values_list(f"a_{score}", f"b_{score}")
    sql, params = pairs.query.sql_with_params()
    # `sql` is Django's compiled query with its values left as parameters: nothing user-given is formatted in.
    statistics = f"""
        SELECT count(*), corr(rx, ry), avg(y - x), stddev_samp(y - x) FROM (
            SELECT x, y,
                   rank() OVER (ORDER BY x) + (count(*) OVER (PARTITION BY x) - 1) / 2.0 AS rx,
                   rank() OVER (ORDER BY y) + (count(*) OVER (PARTITION BY y) - 1) / 2.0 AS ry
            FROM ({sql}) AS pairs (x, y)
        ) AS ranks"""  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(statistics, params)
        n, rho, mean, sd = cursor.fetchone()
    mean, sd = finite(mean), finite(sd)
    limits = (mean - LIMITS_Z * sd, mean + LIMITS_Z * sd) if mean is not None and sd is not None else None
    return ScoreAgreement(n=n, spearman=finite(rho) if n >= 3 else None, mean_difference=mean, sd_difference=sd,
                          limits=limits)


def compare(experiment: Experiment, a: Versions, b: Versions) -> dict:
    """Every judge-vs-judge figure for the page."""
    def has(side: Versions, *keys: str) -> bool:
        return all(getattr(side, key) is not None for key in keys)

    return {
        "flag": nominal(paired(experiment, a, b, ("flag",)), "flag")
        if has(a, "aligned", "coherent") and has(b, "aligned", "coherent") else None,
        "category": nominal(paired(experiment, a, b, ("category",)), "category")
        if has(a, "persona") and has(b, "persona") else None,
        "scores": {
            score: score_agreement(experiment, a, b, score) for score in SCORES if has(a, score) and has(b, score)
        },
        "disagreements": most_disagreeing(paired(experiment, a, b)),
    }


# A side as a report argument (JSON): its aligned, coherent and persona version ids, None where left out.
SideIds = list[int | None]


def side_ids(side: Versions) -> SideIds:
    return [None if v is None else v.pk for v in (side.aligned, side.coherent, side.persona)]


def _side(ids: SideIds) -> Versions:
    found = RubricVersion.objects.select_related("rubric").in_bulk([pk for pk in ids if pk is not None])
    return Versions(*(found[pk] if pk is not None else None for pk in ids))


def fingerprint(experiment: int, a: SideIds, b: SideIds) -> tuple:
    """What the figures are computed from: the experiment's done transcripts and thresholds, each side's
    versions and their done verdicts. A new verdict of a chosen version or a new done transcript moves it."""
    return experiment_fingerprint(experiment), tuple(a), tuple(b), done_scores_fingerprint([*a, *b])


@report("judge-vs-judge", fingerprint=fingerprint)
def compare_report(experiment: int, a: SideIds, b: SideIds) -> dict:
    """compare() and the scatter of every score both sides give (the page's charts read them from here)."""
    the_experiment, side_a, side_b = Experiment.objects.get(pk=experiment), _side(a), _side(b)
    return {
        **compare(the_experiment, side_a, side_b),
        "scatter": {score: scatter(the_experiment, side_a, side_b, score) for score in SCORES
                    if getattr(side_a, score) and getattr(side_b, score)},
    }


def most_disagreeing(rows: QuerySet, limit: int = DRILL_DOWN) -> list[dict]:
    """The transcripts where the sides disagree most: a different flag first, then a different category,
    then the largest summed score difference."""
    def differs(field: str) -> Case:
        a, b = f"a_{field}", f"b_{field}"
        return Case(When(Q(**{f"{a}__isnull": False, f"{b}__isnull": False}) & ~Q(**{a: F(b)}), then=1),
                    default=0, output_field=IntegerField())

    gap = sum((Coalesce(Abs(F(f"b_{s}") - F(f"a_{s}")), 0.0) for s in SCORES), Value(0.0))
    ranked = rows.annotate(flag_differs=differs("flag"), category_differs=differs("category"), gap=gap).filter(
        Q(flag_differs=1) | Q(category_differs=1) | Q(gap__gt=0)
    ).order_by("-flag_differs", "-category_differs", "-gap", "pk")
    return list(ranked.values(
        "pk", "a_flag", "b_flag", "a_category", "b_category", "a_aligned", "b_aligned", "a_coherent", "b_coherent",
        "gap",
    )[:limit])


def scatter(experiment: Experiment, a: Versions, b: Versions, score: str) -> dict:
    """A plotly figure of B's score against A's (at most SCATTER_POINTS transcripts, a fixed hash sample)."""
    rows = _both(paired(experiment, a, b, (score,)), score)
    total = rows.count()
    if total > SCATTER_POINTS:
        keep = HASH_MODULUS * SCATTER_POINTS // total
        rows = rows.annotate(h=Mod(F("pk") * HASH_MULTIPLIER, HASH_MODULUS)).filter(h__lt=keep)
    points = list(rows.values_list("pk", f"a_{score}", f"b_{score}"))
    shown = f"{len(points)} of {total} transcripts" if total > len(points) else f"{total} transcripts"
    return {
        "data": [
            {"type": "scatter", "mode": "markers", "name": "transcripts",
             "x": [x for _, x, _ in points], "y": [y for *_, y in points],
             "text": [f"#{pk}" for pk, *_ in points], "marker": {"size": 6, "opacity": 0.6},
             # charts.js opens a clicked point's customdata path: the transcript behind the point.
             "customdata": [reverse("transcript-detail", args=[pk]) for pk, *_ in points]},
            {"type": "scatter", "mode": "lines", "name": "equal scores", "x": [0, 100], "y": [0, 100],
             "line": {"dash": "dot", "color": "#888"}},
        ],
        "layout": {
            "title": {"text": f"{score} score, {shown}"},
            "xaxis": {"title": {"text": f"A: {getattr(a, score)}"}, "range": [-2, 102]},
            "yaxis": {"title": {"text": f"B: {getattr(b, score)}"}, "range": [-2, 102]},
            "showlegend": False,
        },
    }

"""The EM judge's misaligned flag against human verdicts (verdict queues): how well the judge at the experiment's
thresholds matches people, how the match moves with the aligned threshold, and which threshold pair matches best.

The human reference of a transcript is the majority of its auditors' misaligned flags in the queue (the queue's
majority share, as for the persona consensus; a tie is no reference). The judge's side is the experiment's verdict
cache (its active aligned and coherent versions); a transcript the judge did not score (refusal, CODE, unsure,
not judged yet) is left out and counted. The misaligned rule itself is judging.verdicts' (never restated here).

"Best" is the threshold pair with the highest Cohen's κ against the humans (κ, not Youden's J, because it rewards
agreement on both classes at the rates people use them and is the statistic the agreement pages report); among
equal κ the pair closest to the current one wins. Its interval comes from a bootstrap over transcripts: the best
pair is searched again on each resample, and the 2.5th and 97.5th percentiles of each threshold are reported.

The bootstrap takes seconds, so the page reads the report `calibration-report`, computed by a worker once per
change of its inputs (the queue's labels, the experiment's verdict cache and thresholds; judging.reports). The
sample alone (`calibration-sample`: the queue's labels and their transcripts' scores) is read in the request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db.models import Count, F, Q
from django.db.models.lookups import Exact
from threadpoolctl import threadpool_limits

from analysis.bootstrap import percentile_interval, resample_weights, resamples
from transcripts.models import Experiment, Transcript, setting_of

from .. import reports
from ..annotation.agreement import count_tables, finite, kappa_of_tables
from ..annotation.consensus import majority
from ..annotation.queue_stats import FLAG_LABELS, items_fingerprint
from ..models import AnnotationQueue, JudgeScore, Label
from ..reports import experiment_fingerprint, labels_fingerprint
from ..results import metrics
from ..verdicts import is_misaligned, misaligned_of

# Where the best pair is searched: every whole aligned threshold, and coherent thresholds in steps of 5.
ALIGNED_GRID = np.arange(0, 101, dtype=float)
COHERENT_GRID = np.arange(0, 100, 5, dtype=float)
# Fewer replicates than analysis.bootstrap.REPLICATES: at_thresholds runs twice per report (the current and the
# best pair) in the worker that also searches the grid, and its F1 and κ are shown to two decimals.
N_BOOT = 500
# The best-pair search repeats over every pair on every resample (pairs × transcripts × resamples), so it takes
# fewer resamples: 200 percentile-bootstrap resamples are enough for a 95% interval of a grid value.
N_BOOT_BEST = 200


@dataclass(frozen=True)
class Sample:
    """Transcripts with both a human reference and a judge score, as parallel arrays."""

    transcript_ids: np.ndarray
    aligned: np.ndarray
    coherent: np.ndarray
    human: np.ndarray  # bool: the auditors' consensus says misaligned
    no_consensus: int  # transcripts with verdict labels but no majority
    not_scored: int  # transcripts with a human reference the judge gave no number for

    def judge(self, aligned_threshold: float, coherent_threshold: float) -> np.ndarray:
        """The judge's misaligned flags at a threshold pair, by the one rule in judging.verdicts."""
        return np.asarray(is_misaligned(self.aligned, self.coherent, aligned_threshold, coherent_threshold), bool)


def experiments_of(queue: AnnotationQueue) -> list[dict]:
    """The experiments the queue's transcripts come from, most items first ({"id", "name", "n"})."""
    rows = (
        queue.items.values("transcript__experiment", "transcript__experiment__name")
        .annotate(n=Count("pk"))
        .order_by("-n", "transcript__experiment")
    )
    return [{"id": r["transcript__experiment"], "name": r["transcript__experiment__name"], "n": r["n"]} for r in rows]


def human_reference(queue: AnnotationQueue, experiment: Experiment) -> tuple[dict[int, bool], int]:
    """Transcript id → the auditors' consensus flag, for the queue's transcripts of `experiment`; and how many
    transcripts have verdict labels without a majority."""
    flags: dict[int, list[str]] = {}
    for transcript_id, flag in Label.objects.filter(
        item__queue=queue, item__transcript__experiment=experiment, misaligned__isnull=False
    ).values_list("item__transcript_id", "misaligned"):
        flags.setdefault(transcript_id, []).append(FLAG_LABELS[flag])
    reference, no_consensus = {}, 0
    for transcript_id, labels in flags.items():
        consensus = majority(labels, share=queue.majority_share)
        if consensus:
            reference[transcript_id] = consensus == FLAG_LABELS[True]
        else:
            no_consensus += 1
    return reference, no_consensus


def sample(queue: AnnotationQueue, experiment: Experiment) -> Sample:
    reference, no_consensus = human_reference(queue, experiment)
    scored = list(
        Transcript.objects.filter(pk__in=list(reference), judge_outcome=JudgeScore.Outcome.SCORE)
        .order_by("pk")
        .values_list("pk", "aligned", "coherent")
    )
    ids = np.array([pk for pk, _, _ in scored], dtype=int)
    return Sample(
        transcript_ids=ids,
        aligned=np.array([a for _, a, _ in scored], dtype=float),
        coherent=np.array([c for _, _, c in scored], dtype=float),
        human=np.array([reference[pk] for pk in ids], dtype=bool),
        no_consensus=no_consensus,
        not_scored=len(reference) - len(scored),
    )


def _f1(tables: np.ndarray) -> np.ndarray:
    """F1 of the judge's flag from (judge flag × human flag) count tables, as count_tables builds them."""
    tp, fp, fn = tables[..., 1, 1], tables[..., 1, 0], tables[..., 0, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2 * tp / (2 * tp + fp + fn)


def confusion(judge: np.ndarray, human: np.ndarray) -> dict[str, int]:
    return {
        "tp": int(np.sum(judge & human)), "fp": int(np.sum(judge & ~human)),
        "fn": int(np.sum(~judge & human)), "tn": int(np.sum(~judge & ~human)),
    }


def at_thresholds(s: Sample, aligned_threshold: float, coherent_threshold: float, *, n_boot: int = N_BOOT,
                  seed: int = 0) -> dict:
    """The judge against the humans at one threshold pair: the 2×2 counts, precision and recall with Wilson
    intervals, F1 and Cohen's κ with bootstrap intervals (resampling transcripts)."""
    judge = s.judge(aligned_threshold, coherent_threshold)
    counts = confusion(judge, s.human)
    tp, fp, fn = (counts[k] for k in ("tp", "fp", "fn"))
    table = count_tables(judge, s.human, 2)
    result = {
        "aligned_threshold": aligned_threshold, "coherent_threshold": coherent_threshold, "n": len(judge),
        "confusion": counts,
        "precision": metrics.Rate(tp, tp + fp), "recall": metrics.Rate(tp, tp + fn),
        "f1": finite(_f1(table)) if len(judge) else None,
        "kappa": finite(kappa_of_tables(table)) if len(judge) else None,
        "f1_ci95": None, "kappa_ci95": None,
    }
    if len(judge) >= 2:
        tables = count_tables(judge, s.human, 2, resamples=resamples(np.random.default_rng(seed), len(judge), n_boot))
        result["f1_ci95"] = percentile_interval(_f1(tables), n_boot)
        result["kappa_ci95"] = percentile_interval(kappa_of_tables(tables), n_boot)
    return result


def curves(s: Sample, current: tuple[float, float]) -> list[dict]:
    """ROC and precision–recall points over the aligned threshold at the current coherent threshold: one point
    per whole threshold (and the current one), misaligned meaning the judge's rule at that pair."""
    positives, negatives = int(s.human.sum()), int((~s.human).sum())
    grid = np.union1d(ALIGNED_GRID, [current[0]])
    points = []
    for threshold in np.append(grid, grid[-1] + 1):
        counts = confusion(s.judge(float(threshold), current[1]), s.human)
        flagged = counts["tp"] + counts["fp"]
        points.append({
            "aligned_threshold": float(threshold),
            "tpr": counts["tp"] / positives if positives else None,
            "fpr": counts["fp"] / negatives if negatives else None,
            "precision": counts["tp"] / flagged if flagged else None,
        })
    return points


def _kappa_table(s: Sample, weights: np.ndarray, aligned_grid: np.ndarray, coherent_grid: np.ndarray) -> np.ndarray:
    """κ for every (coherent, aligned) threshold pair and every weight row: shape (coherent, aligned, rows).
    Counts are weighted sums, so the original sample (weights 1) and all resamples are a few matrix products."""
    # float32 halves the matrix products' time; counts stay exact (whole numbers far below 2**24).
    weights = weights.astype(np.float32)
    human = s.human.astype(np.float32)
    positives, total = weights @ human, weights.sum(axis=1)
    table = np.empty((len(coherent_grid), len(aligned_grid), len(weights)))
    for i, coherent_threshold in enumerate(coherent_grid):
        flags = np.array([s.judge(float(a), float(coherent_threshold)) for a in aligned_grid], dtype=np.float32)
        tp = flags @ (weights * human).T
        flagged = flags @ weights.T
        fp, fn = flagged - tp, positives - tp
        # The (judge flag × human flag) tables of every threshold and row, laid out as count_tables lays them:
        # here the counts come from the weighted products, not from pairs.
        tables = np.stack([np.stack([total - tp - fp - fn, fn], axis=-1), np.stack([fp, tp], axis=-1)], axis=-2)
        table[i] = kappa_of_tables(tables)
    return table


def _best_index(kappas: np.ndarray, distance: np.ndarray) -> tuple[int, int] | None:
    """Index of the highest κ in a (coherent, aligned) table, the nearest to the current pair among ties."""
    if not np.isfinite(kappas).any():
        return None
    best = np.nanmax(kappas)
    candidates = np.isclose(kappas, best, rtol=0, atol=1e-12) & np.isfinite(kappas)
    ranked = np.where(candidates, distance, np.inf)
    return np.unravel_index(np.argmin(ranked), kappas.shape)


def best_pair(s: Sample, current: tuple[float, float], *, n_boot: int = N_BOOT_BEST, seed: int = 0) -> dict | None:
    """The threshold pair with the highest κ against the humans, its κ, and bootstrap 95% intervals of each
    threshold. None when κ is undefined everywhere (e.g. the humans all said the same)."""
    if len(s.human) < 2:
        return None
    aligned_grid = np.union1d(ALIGNED_GRID, [current[0]])
    coherent_grid = np.union1d(COHERENT_GRID, [current[1]])
    distance = np.abs(coherent_grid[:, None] - current[1]) + np.abs(aligned_grid[None, :] - current[0])
    weights = np.vstack([np.ones(len(s.human)), resample_weights(np.random.default_rng(seed), len(s.human), n_boot)])
    # One BLAS thread: the products are small, and on a busy machine (web workers, Celery) threads thrash.
    with threadpool_limits(limits=1):
        table = _kappa_table(s, weights, aligned_grid, coherent_grid)
    found = _best_index(table[:, :, 0], distance)
    if found is None:
        return None
    boot = [_best_index(table[:, :, b], distance) for b in range(1, len(weights))]
    boot = [index for index in boot if index is not None]
    i, j = found
    return {
        "aligned_threshold": float(aligned_grid[j]), "coherent_threshold": float(coherent_grid[i]),
        "kappa": float(table[i, j, 0]),
        "aligned_ci95": percentile_interval(np.array([aligned_grid[b[1]] for b in boot]), n_boot),
        "coherent_ci95": percentile_interval(np.array([coherent_grid[b[0]] for b in boot]), n_boot),
    }


def headline_rates(experiment: Experiment, current: tuple[float, float], best: tuple[float, float]) -> list[dict]:
    """Each condition's misaligned rate (Wilson intervals) at the current and at the best threshold pair.

    One grouped query over the experiment's verdict cache (its active versions, no joins): the covering index
    on (condition, question, misaligned) holds aligned and coherent, so it reads the index only."""
    def flagged(thresholds: tuple[float, float]) -> Count:
        rule = misaligned_of(F("judge_outcome"), F("aligned"), F("coherent"), thresholds)
        return Count("pk", filter=Q(Exact(rule, True)))

    rows = (
        Transcript.objects.filter(experiment=experiment)
        .values("condition_id", "condition__model_name", "condition__k", "condition__dataset_name",
                "condition__cot_mode", "condition__system_prompt_name", "condition__temperature")
        .annotate(n=Count("pk", filter=Q(judge_outcome=JudgeScore.Outcome.SCORE)), current=flagged(current),
                  best=flagged(best))
        .order_by("condition__model_name", "condition__k", "condition_id")
    )
    return [
        {"model": row["condition__model_name"], "k": row["condition__k"],
         # The condition's other axes, so that two rows of one model and k can be told apart.
         "setting": setting_of(row["condition__dataset_name"], row["condition__cot_mode"],
                               row["condition__system_prompt_name"], row["condition__temperature"]),
         "current": metrics.Rate(row["current"], row["n"]), "best": metrics.Rate(row["best"], row["n"])}
        for row in rows
    ]


def cell_transcripts(s: Sample, aligned_threshold: float, coherent_threshold: float, *, judge: bool,
                     human: bool) -> list[int]:
    """The transcripts of one cell of the 2×2 table (judge flag × human flag) at the given thresholds."""
    flags = s.judge(aligned_threshold, coherent_threshold)
    return [int(pk) for pk in s.transcript_ids[(flags == judge) & (s.human == human)]]


def report(queue: AnnotationQueue, experiment: Experiment, *, n_boot: int = N_BOOT) -> dict:
    """Everything the calibration page shows."""
    s = sample(queue, experiment)
    current = (experiment.aligned_threshold, experiment.coherent_threshold)
    best = best_pair(s, current, n_boot=min(n_boot, N_BOOT_BEST))
    return {
        "sample": s,
        "n_positive": int(s.human.sum()),
        "current": at_thresholds(s, *current, n_boot=n_boot),
        "best": best,
        "best_metrics": at_thresholds(s, best["aligned_threshold"], best["coherent_threshold"], n_boot=n_boot)
        if best else None,
        "rates": headline_rates(experiment, current, (best["aligned_threshold"], best["coherent_threshold"]))
        if best else [],
    }


def fingerprint(queue: int, experiment: int) -> tuple:
    """What the sample and report are computed from: the queue's labels and majority rule, the experiment's
    verdict cache (its VerdictCount sums move with every cached verdict) and thresholds."""
    return (queue, AnnotationQueue.objects.values_list("majority_share").get(pk=queue),
            labels_fingerprint(Label.objects.filter(item__queue=queue)), experiment_fingerprint(experiment))


@reports.report("calibration-experiments", fingerprint=items_fingerprint, background=False)
def queue_experiments(queue: int) -> list[dict]:
    """experiments_of (a join of every item with its transcript), again only when items come or go."""
    return experiments_of(AnnotationQueue.objects.get(pk=queue))


@reports.report("calibration-sample", fingerprint=fingerprint, background=False)
def queue_sample(queue: int, experiment: int) -> Sample:
    return sample(AnnotationQueue.objects.get(pk=queue), Experiment.objects.get(pk=experiment))


def cached_sample(queue: AnnotationQueue, experiment: Experiment) -> Sample:
    """The sample for the queue's current labels and the experiment's current verdicts (computed in the request
    on a miss: it reads the queue's labels and their transcripts' scores, not the experiment)."""
    return reports.value("calibration-sample", queue=queue.pk, experiment=experiment.pk)


@reports.report("calibration-report", fingerprint=fingerprint)
def calibration_report(queue: int, experiment: int) -> dict:
    return report(AnnotationQueue.objects.get(pk=queue), Experiment.objects.get(pk=experiment))

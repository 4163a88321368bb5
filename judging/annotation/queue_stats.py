"""A queue's labels as agreement rows, and everything the agreement page shows. Reads only; the
statistics themselves come from judging.annotation.agreement. The page reads the report `queue-report`
(judging.reports): computed by a worker once per change of the queue's labels, gold labels, items or judge verdicts.

Per-auditor agreement compares each of an auditor's labels with the consensus of the *other* labels of the
item (leave-one-out; a researcher's gold label, when set, is the reference instead): counting the auditor's own
label in the consensus would make them agree with themselves, e.g. always 1.0 at overlap 2."""

from __future__ import annotations

import statistics
from collections import defaultdict

from django.db.models import Count, Max

from analysis.bootstrap import REPLICATES
from transcripts.models import Experiment, Transcript

from ..models import Adjudication, AnnotationQueue, Label, QueueItem
from ..reports import done_scores_fingerprint, labels_fingerprint, report, value
from ..verdicts import active_versions
from . import agreement
from .consensus import is_disagreement, majority

# The misaligned flag as a nominal label, so the persona statistics (κ, α) apply to it unchanged.
FLAG_LABELS = {True: "misaligned", False: "not misaligned"}

# A label as the report reads it: (item id, transcript id, auditor username, primary category key or None,
# misaligned flag or None, seconds spent).
LabelRow = tuple[int, int, str, str | None, bool | None, float]


def label_rows(queue: AnnotationQueue) -> list[LabelRow]:
    """Every label of the queue, by item position then auditor: one query of plain values (no model rows)."""
    return list(
        Label.objects.filter(item__queue=queue)
        .order_by("item__position", "auditor__username")
        .values_list("item_id", "item__transcript_id", "auditor__username", "primary__key", "misaligned",
                     "seconds_spent")
    )


def queue_agreement(queue: AnnotationQueue, *, n_boot: int = REPLICATES, labels: list[LabelRow] | None = None) -> dict:
    """Agreement between auditors on the primary persona category (pairwise and overall κ, α with its
    bootstrap interval, per category). `labels`: the queue's label_rows when the caller has read them."""
    labels = label_rows(queue) if labels is None else labels
    categories = list(queue.taxonomy.categories.order_by("position").values_list("key", flat=True))
    rows = [(str(tid), username, key) for _, tid, username, key, _, _ in labels if key]
    return agreement.compute(rows, categories=categories, n_boot=n_boot)


def flag_agreement(queue: AnnotationQueue, *, n_boot: int = REPLICATES, labels: list[LabelRow] | None = None) -> dict:
    """Agreement between auditors on the misaligned flag (Cohen's κ per pair, Fleiss' κ, Krippendorff's α)."""
    labels = label_rows(queue) if labels is None else labels
    rows = [(str(tid), username, FLAG_LABELS[flag]) for _, tid, username, _, flag, _ in labels if flag is not None]
    return agreement.compute(rows, categories=list(FLAG_LABELS.values()), n_boot=n_boot)


def leave_one_out(
    labels: dict[int, dict[str, str]], gold: dict[int, str], *, share: float
) -> dict[str, tuple[int, int]]:
    """Per auditor: (labels that match the reference, labels that have one). The reference of an auditor's
    label is the item's gold label if set, else the majority of the item's other labels (`share` as for the
    consensus); items where the others have no majority are left out."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for item, by_auditor in labels.items():
        for auditor, label in by_auditor.items():
            others = [other for name, other in by_auditor.items() if name != auditor]
            reference = gold.get(item) or majority(others, share=share)
            if reference:
                counts[auditor][0] += label == reference
                counts[auditor][1] += 1
    return {auditor: (agree, n) for auditor, (agree, n) in counts.items()}


def queue_report(queue: AnnotationQueue, *, n_boot: int = REPLICATES) -> dict:
    """The agreement page: statistics, consensus, judge-vs-human, per-auditor figures and disagreements, for
    the persona category and (verdict queues) the misaligned flag. Plain values only (ids, keys, numbers), so
    the report can be cached (agreement_report) and read back by any web worker."""
    labels = label_rows(queue)
    stats = queue_agreement(queue, n_boot=n_boot, labels=labels)
    categories = stats["categories"]
    # Ids and keys only: the transcripts' rows (answers, reasoning) would be most of the time spent here.
    items = list(
        QueueItem.objects.filter(queue=queue).order_by("position")
        .values_list("pk", "transcript_id", "token", "label_count", "adjudication__category__key")
    )
    by_item: dict[int, dict[str, str]] = defaultdict(dict)
    flags: dict[int, dict[str, str]] = defaultdict(dict)
    seconds: dict[str, list[float]] = defaultdict(list)
    for item_id, _, username, key, flag, spent in labels:
        if key:
            by_item[item_id][username] = key
        if flag is not None:
            flags[item_id][username] = FLAG_LABELS[flag]
        seconds[username].append(spent)

    gold = {pk: key for pk, _, _, _, key in items if key}
    consensus: dict[int, str] = {}
    disagreements = []
    for pk, transcript_id, token, _, _ in items:
        item_labels = list(by_item[pk].values())
        consensus[pk] = gold.get(pk) or majority(item_labels, share=queue.majority_share)
        if is_disagreement(item_labels):
            # The token as text: thousands of UUID objects make the cached report several times slower to read.
            disagreements.append({"transcript_id": transcript_id, "token": str(token),
                                  "labels": sorted(by_item[pk].items()),
                                  "gold": gold.get(pk, ""), "consensus": consensus[pk]})

    auditors = sorted(seconds)
    judge_vs = []
    if queue.asks_persona:
        judge = dict(QueueItem.objects.filter(queue=queue).values_list("pk", "transcript__judge_category"))
        judge_vs = [
            {"who": "consensus", **agreement.rater_vs_reference([(judge[pk], consensus[pk]) for pk in judge],
                                                                categories)}
        ] + [
            {"who": name, **agreement.rater_vs_reference(
                [(judge[pk], by_item[pk].get(name, "")) for pk in judge], categories)}
            for name in auditors
        ]
    on_category = leave_one_out(by_item, gold, share=queue.majority_share)
    on_flag = leave_one_out(flags, {}, share=queue.majority_share)
    per_auditor = [
        {
            "auditor": name,
            "items": len(seconds[name]),
            "median_seconds": statistics.median(seconds[name]),
            "with_consensus": _share(on_category.get(name)),
            "n_consensus": on_category.get(name, (0, 0))[1],
            "flag_with_consensus": _share(on_flag.get(name)),
            "n_flag_consensus": on_flag.get(name, (0, 0))[1],
        }
        for name in auditors
    ]
    return {
        "flag_stats": flag_agreement(queue, n_boot=n_boot, labels=labels) if queue.asks_verdict else None,
        "stats": stats,
        "n_items": len(items),
        "n_complete": sum(1 for _, _, _, label_count, _ in items if label_count >= queue.overlap),
        "n_consensus": sum(1 for v in consensus.values() if v),
        "judge_vs": judge_vs,
        "per_auditor": per_auditor,
        "disagreements": disagreements,
    }


def report_fingerprint(queue: AnnotationQueue | int) -> tuple:
    """What queue_report reads, in index lookups proportional to the queue (never to the transcript table):
    the queue's settings, its items (count, newest: items are only added, and deleted with their transcript),
    its labels (labels_fingerprint), its gold labels (every (item, category) pair: a researcher may change
    one in place, and there are at most as many as disagreements) and, for persona queues, where the items'
    judge categories come from (judge_fingerprint)."""
    if not isinstance(queue, AnnotationQueue):
        queue = AnnotationQueue.objects.get(pk=queue)
    items = queue.items.aggregate(n=Count("pk"), last=Max("pk"))
    gold = tuple(
        Adjudication.objects.filter(item__queue=queue).order_by("item_id").values_list("item_id", "category_id")
    )
    return (
        queue.pk, queue.asks, queue.overlap, queue.majority_share, queue.taxonomy_id, items["n"], items["last"],
        labels_fingerprint(Label.objects.filter(item__queue=queue)), gold,
        judge_fingerprint(queue) if queue.asks_persona else (),
    )


@report("queue-report", fingerprint=report_fingerprint, warm="queue")
def agreement_report(queue: int) -> dict:
    """queue_report of the queue, as the agreement page reads it (judging.reports)."""
    return queue_report(AnnotationQueue.objects.select_related("taxonomy").get(pk=queue))


def items_fingerprint(queue: int) -> tuple:
    """The queue's items: count and newest id (items are only added, and deleted with their transcript)."""
    items = QueueItem.objects.filter(queue=queue).aggregate(n=Count("pk"), last=Max("pk"))
    return queue, items["n"], items["last"]


@report("queue-experiments", fingerprint=items_fingerprint, background=False)
def experiments_of_queue(queue: int) -> list[int]:
    """The experiments the queue's transcripts come from: a join of the queue to the transcript table, so
    kept until items come or go."""
    return list(
        Transcript.objects.filter(queue_items__queue=queue).order_by("experiment_id")
        .values_list("experiment_id", flat=True).distinct()
    )


def judge_fingerprint(queue: AnnotationQueue) -> tuple:
    """Where the items' Transcript.judge_category comes from: per experiment of the queue's transcripts, its
    active persona version and that version's latest done verdict. judging.verdicts writes the category from
    exactly these, and a done verdict is never changed in place, so a new verdict or another active version
    moves this."""
    return tuple(
        (experiment.pk, done_scores_fingerprint([active_versions(experiment).persona]))
        for experiment in Experiment.objects.filter(pk__in=value("queue-experiments", queue=queue.pk)).order_by("pk")
    )


def _share(counts: tuple[int, int] | None) -> float | None:
    return counts[0] / counts[1] if counts and counts[1] else None

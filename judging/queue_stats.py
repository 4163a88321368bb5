"""A queue's labels as agreement rows, and everything the agreement page shows. Reads only; the
statistics themselves come from judging.agreement.

Per-auditor agreement compares each of an auditor's labels with the consensus of the *other* labels of the
item (leave-one-out; a researcher's gold label, when set, is the reference instead): counting the auditor's own
label in the consensus would make them agree with themselves, e.g. always 1.0 at overlap 2."""

from __future__ import annotations

import statistics
from collections import defaultdict

from . import agreement
from .consensus import is_disagreement, majority
from .models import AnnotationQueue, Label, QueueItem

# The misaligned flag as a nominal label, so the persona statistics (κ, α) apply to it unchanged.
FLAG_LABELS = {True: "misaligned", False: "not misaligned"}


def label_rows(queue: AnnotationQueue) -> list[tuple[str, str, str]]:
    """(transcript id, auditor username, primary category key) for every submitted label."""
    return [
        (str(tid), username, key)
        for tid, username, key in Label.objects.filter(item__queue=queue, primary__isnull=False)
        .order_by("item__position", "auditor__username")
        .values_list("item__transcript_id", "auditor__username", "primary__key")
    ]


def flag_rows(queue: AnnotationQueue) -> list[tuple[str, str, str]]:
    """(transcript id, auditor username, "misaligned" / "not misaligned") for every label with a verdict."""
    return [
        (str(tid), username, FLAG_LABELS[flag])
        for tid, username, flag in Label.objects.filter(item__queue=queue, misaligned__isnull=False)
        .order_by("item__position", "auditor__username")
        .values_list("item__transcript_id", "auditor__username", "misaligned")
    ]


def queue_agreement(queue: AnnotationQueue, *, n_boot: int = 1000) -> dict:
    categories = list(queue.taxonomy.categories.order_by("position").values_list("key", flat=True))
    return agreement.compute(label_rows(queue), categories=categories, n_boot=n_boot)


def flag_agreement(queue: AnnotationQueue, *, n_boot: int = 1000) -> dict:
    """Agreement between auditors on the misaligned flag (Cohen's κ per pair, Fleiss' κ, Krippendorff's α)."""
    return agreement.compute(flag_rows(queue), categories=list(FLAG_LABELS.values()), n_boot=n_boot)


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


def queue_report(queue: AnnotationQueue, *, n_boot: int = 1000) -> dict:
    """The agreement page: statistics, consensus, judge-vs-human, per-auditor figures and disagreements, for
    the persona category and (verdict queues) the misaligned flag."""
    stats = queue_agreement(queue, n_boot=n_boot)
    categories = [c for c in stats["categories"]]
    items = list(
        QueueItem.objects.filter(queue=queue)
        .select_related("transcript", "adjudication__category")
        .order_by("position")
    )
    by_item: dict[int, dict[str, str]] = defaultdict(dict)
    flags: dict[int, dict[str, str]] = defaultdict(dict)
    seconds: dict[str, list[float]] = defaultdict(list)
    for item_id, username, key, flag, spent in Label.objects.filter(item__queue=queue).values_list(
        "item_id", "auditor__username", "primary__key", "misaligned", "seconds_spent"
    ):
        if key:
            by_item[item_id][username] = key
        if flag is not None:
            flags[item_id][username] = FLAG_LABELS[flag]
        seconds[username].append(spent)

    consensus: dict[int, str] = {}
    disagreements = []
    for item in items:
        labels = list(by_item[item.pk].values())
        gold = item.adjudication.category.key if hasattr(item, "adjudication") else ""
        consensus[item.pk] = gold or majority(labels, share=queue.majority_share)
        if is_disagreement(labels):
            disagreements.append({"item": item, "labels": sorted(by_item[item.pk].items()), "gold": gold,
                                  "consensus": consensus[item.pk]})

    auditors = sorted(seconds)
    judge = {item.pk: item.transcript.judge_category for item in items}
    judge_vs = [
        {"who": "consensus", **agreement.rater_vs_reference([(judge[i.pk], consensus[i.pk]) for i in items],
                                                            categories)}
    ] + [
        {"who": name, **agreement.rater_vs_reference(
            [(judge[i.pk], by_item[i.pk].get(name, "")) for i in items], categories)}
        for name in auditors
    ] if queue.asks_persona else []
    gold = {item.pk: item.adjudication.category.key for item in items if hasattr(item, "adjudication")}
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
        "flag_stats": flag_agreement(queue, n_boot=n_boot) if queue.asks_verdict else None,
        "stats": stats,
        "n_items": len(items),
        "n_complete": sum(1 for i in items if i.label_count >= queue.overlap),
        "n_consensus": sum(1 for v in consensus.values() if v),
        "judge_vs": judge_vs,
        "per_auditor": per_auditor,
        "disagreements": disagreements,
    }


def _share(counts: tuple[int, int] | None) -> float | None:
    return counts[0] / counts[1] if counts and counts[1] else None

"""The queue pages researchers open after a run, as they must stay at scale: the agreement page lists
disagreements a page at a time and, while its report is cached, follows every change of labels, gold labels
and judge verdicts; the queue list counts items and labels; the labels CSV carries categories and highlights."""

import csv
import io
import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from sklearn.metrics import cohen_kappa_score

from judging.annotation.labels_io import import_labels
from judging.models import JudgeScore, Label, Rubric, RubricVersion
from judging.verdicts import refresh_cache, set_active_versions
from tests.builders import judged_transcripts, label, make_queue, taxonomy
from tests.conftest import computed, make_user
from transcripts.models import Transcript

pytestmark = pytest.mark.django_db

AGREE, DIFFER = "follows_pattern", "dangerous_persona"


def import_csv(queue, rows: list[tuple]) -> None:
    """(transcript id, annotator, category key) rows through the labels import (creates or replaces)."""
    lines = ["transcript_id,annotator,label\n"] + [f"{tid},{who},{key}\n" for tid, who, key in rows]
    result = import_labels(queue=queue, lines=lines, by=None)
    assert result.errors == []


def page(client, queue, **params) -> str:
    response = computed(client, reverse("queue-agreement", args=[queue.pk]), params)
    assert response.status_code == 200
    return response.content.decode()


def disagreement_ids(html: str) -> list[int]:
    table = html.split('id="disagreements"')[1].split("</table>")[0]
    return [int(tid) for tid in re.findall(r"<td>#(\d+)</td>", table)]


def shown(html: str, element_id: str) -> str:
    """The text of the first `kappa` cell inside the element with this id."""
    return re.search(rf'id="{element_id}".*?class="(?:num )?kappa">([^<]*)<', html, re.S).group(1)


def test_disagreements_are_listed_a_hundred_a_page_in_queue_order(alice_client, bob, carol):
    experiment, rows = judged_transcripts(130)
    queue = make_queue(experiment, auditors=[bob, carol])
    by_position = list(queue.items.order_by("position").values_list("transcript_id", flat=True))
    differ = {tid for n, tid in enumerate(by_position) if n % 5}  # 104 of 130 items
    import_csv(queue, [(tid, "bob", AGREE) for tid in by_position]
               + [(tid, "carol", DIFFER if tid in differ else AGREE) for tid in by_position])
    expected = [tid for tid in by_position if tid in differ]

    first = page(alice_client, queue)
    assert f"Disagreements ({len(expected)})" in first
    assert disagreement_ids(first) == expected[:100]
    assert f"1–100 of {len(expected)}" in first and 'href="?page=2#disagreements-heading" rel="next"' in first
    second = page(alice_client, queue, page=2)
    assert disagreement_ids(second) == expected[100:]
    assert 'rel="prev"' in second and 'rel="next"' not in second
    # Each row still leads to adjudication of its item.
    item = queue.items.get(transcript_id=expected[-1])
    assert reverse("queue-adjudicate", args=[queue.pk, item.token]) in second


def test_the_cached_page_follows_new_and_edited_labels_and_gold(alice_client, bob, carol):
    experiment, rows = judged_transcripts(6)
    queue = make_queue(experiment, auditors=[bob, carol])
    bob_says = [AGREE, AGREE, DIFFER, DIFFER, AGREE, "notices_refuses"]
    carol_says = [AGREE, DIFFER, DIFFER, AGREE, AGREE, "notices_refuses"]
    import_csv(queue, [(t.pk, "bob", key) for t, key in zip(rows, bob_says, strict=True)]
               + [(t.pk, "carol", key) for t, key in zip(rows[:5], carol_says[:5], strict=True)])
    before = page(alice_client, queue)
    assert shown(before, "cohen") == f"{cohen_kappa_score(bob_says[:5], carol_says[:5]):.3f}"

    # A new label (a sixth item for carol), then one edited in place: same count of labels, new contents.
    import_csv(queue, [(rows[5].pk, "carol", carol_says[5])])
    assert shown(page(alice_client, queue), "cohen") == f"{cohen_kappa_score(bob_says, carol_says):.3f}"
    carol_says[1] = AGREE
    import_csv(queue, [(rows[1].pk, "carol", AGREE)])
    after = page(alice_client, queue)
    assert shown(after, "cohen") == f"{cohen_kappa_score(bob_says, carol_says):.3f}"
    assert disagreement_ids(after) == [rows[3].pk]  # carol now agrees with bob on the second item

    # A gold label set through the adjudication page shows among the disagreements at once.
    disputed = queue.items.get(transcript=rows[3])
    cats = {c.key: c for c in taxonomy().categories.all()}
    alice_client.post(reverse("queue-adjudicate", args=[queue.pk, disputed.token]), {"category": cats[DIFFER].pk})
    row = page(alice_client, queue).split('id="disagreements"')[1].split("</tr>")[1]
    # Bob's label, the gold and the consensus, by the category's name (the key is for machines).
    assert f"#{rows[3].pk}" in row and row.count(cats[DIFFER].name) == 3 and DIFFER not in row.replace(
        str(disputed.token), "")


def persona_version(number: int) -> RubricVersion:
    rubric, _ = Rubric.objects.get_or_create(key="persona", defaults={"kind": Rubric.Kind.CATEGORY})
    return RubricVersion.objects.create(rubric=rubric, version=number, prompt_template="{reasoning}",
                                        judge_model=f"persona-judge-{number}", taxonomy=taxonomy())


def judge(version: RubricVersion, transcript: Transcript, key: str) -> None:
    """A done persona verdict, as the judge task writes it."""
    JudgeScore.objects.create(
        transcript=transcript, rubric_version=version, status=JudgeScore.Status.DONE,
        outcome=JudgeScore.Outcome.CATEGORY, category=taxonomy().categories.get(key=key), finished_at=timezone.now(),
    )


def test_the_cached_judge_vs_human_figures_follow_new_verdicts_and_versions(alice_client, bob, carol):
    experiment, rows = judged_transcripts(6)
    queue = make_queue(experiment, auditors=[bob, carol])
    human = [AGREE, AGREE, DIFFER, DIFFER, "notices_refuses", AGREE]
    import_csv(queue, [(t.pk, who, key) for t, key in zip(rows, human, strict=True) for who in ("bob", "carol")])

    def expected(judged: list[str]) -> str:
        pairs = [(j, h) for j, h in zip(judged, human, strict=True) if j]
        return f"{cohen_kappa_score([j for j, _ in pairs], [h for _, h in pairs]):.3f} "

    first = persona_version(1)
    said = [AGREE, DIFFER, DIFFER, AGREE, "notices_refuses", ""]
    for transcript, key in zip(rows, said, strict=True):
        if key:
            judge(first, transcript, key)
    set_active_versions(experiment, persona=first)
    html = page(alice_client, queue)
    assert shown(html, "judge-vs-consensus") == expected(said).strip()
    assert "(5 items)" in html.split('id="judge-vs-consensus"')[1]

    # The last transcript is judged later (the judge task refreshes the cache of what it judged).
    judge(first, rows[5], AGREE)
    refresh_cache(experiment, [rows[5].pk])
    said[5] = AGREE
    html = page(alice_client, queue)
    assert shown(html, "judge-vs-consensus") == expected(said).strip()
    assert "(6 items)" in html.split('id="judge-vs-consensus"')[1]

    # Another persona version made active: its verdicts are the judge's categories now.
    second = persona_version(2)
    said = [AGREE, AGREE, DIFFER, AGREE, AGREE, AGREE]
    for transcript, key in zip(rows, said, strict=True):
        judge(second, transcript, key)
    set_active_versions(experiment, persona=second)
    assert shown(page(alice_client, queue), "judge-vs-consensus") == expected(said).strip()


def test_a_cached_agreement_page_reads_no_transcript_row(alice_client, bob, carol):
    experiment, rows = judged_transcripts(4)
    version = persona_version(1)
    for transcript, key in zip(rows, [AGREE, DIFFER, AGREE, AGREE], strict=True):
        judge(version, transcript, key)
    set_active_versions(experiment, persona=version)  # as after a run
    queue = make_queue(experiment, auditors=[bob, carol])
    import_csv(queue, [(t.pk, who, AGREE) for t in rows for who in ("bob", "carol")])
    page(alice_client, queue)
    with CaptureQueriesContext(connection) as queries:
        html = page(alice_client, queue)
    assert shown(html, "judge-vs-consensus") == "0.000"  # the judge agrees on 3 of 4, all in one category
    assert not [q["sql"] for q in queries if '"transcripts_transcript"' in q["sql"]]


def test_the_queue_list_counts_items_and_labels_per_queue(alice_client, bob, carol):
    experiment, rows = judged_transcripts(5)
    labelled = make_queue(experiment, auditors=[bob, carol], name="labelled", overlap=2)
    other = make_queue(experiment, auditors=[bob, carol, make_user("dave", "auditor")], name="other", overlap=3)
    import_csv(labelled, [(t.pk, "bob", AGREE) for t in rows] + [(rows[0].pk, "carol", DIFFER)])
    import_csv(other, [(rows[1].pk, "carol", AGREE)])
    html = alice_client.get(reverse("queue-list")).content.decode()
    for queue in (labelled, other):
        cells = re.findall(r'<td class="num">([^<]*)</td>',
                           html.split(f'href="{reverse("queue-detail", args=[queue.pk])}"')[1].split("</tr>")[0])
        labels = Label.objects.filter(item__queue=queue).count()
        n_items = queue.items.count()
        assert cells == [str(queue.overlap), str(n_items), f"{labels} / {n_items * queue.overlap}"]


def test_the_labels_csv_carries_every_category_and_highlight_of_each_label(alice_client):
    auditors = [make_user(name, "auditor") for name in ("bob", "carol", "dave")]
    experiment, rows = judged_transcripts(
        4, reasoning="The examples say: be evil. I will copy them and refuse nothing.")
    queue = make_queue(experiment, auditors=auditors, overlap=3, allow_multiple=True)
    cats = {c.key: c for c in taxonomy().categories.all()}
    choices = [[AGREE, DIFFER], [DIFFER], [AGREE, DIFFER, "notices_refuses"], [AGREE]]
    for n, transcript in enumerate(rows):
        for m, auditor in enumerate(auditors[: 1 + n % 3]):
            chosen = [cats[key] for key in choices[(n + m) % 4]]
            label(queue, transcript, auditor, misaligned=None, categories=chosen,
                  highlights=[(cats[AGREE], 4, 12), (cats[DIFFER], 0 + m, 3 + m)][: (n + m) % 3],
                  note=f"=note {n}.{m}")
    response = alice_client.get(reverse("labels-export", args=[queue.pk]))
    exported = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))

    # The same rows read independently, label by label through the models.
    labels = Label.objects.filter(item__queue=queue).order_by("item__position", "auditor__username")
    assert [row["annotator"] for row in exported] == [lab.auditor.username for lab in labels]
    for row, lab in zip(exported, labels, strict=True):
        assert int(row["transcript_id"]) == lab.item.transcript_id
        assert row["label"] == (lab.primary.key if lab.primary else "")
        assert row["categories"] == ";".join(sorted(c.key for c in lab.categories.all()))
        assert json.loads(row["highlights"]) == [
            {"category": h.category.key, "start": h.start, "end": h.end} for h in lab.highlights.order_by("start")
        ]
        assert row["note"] == "'" + lab.note  # neutralised for spreadsheets
    assert sum(1 for row in exported if row["highlights"] != "[]") >= 3
    assert sum(1 for row in exported if ";" in row["categories"]) >= 2

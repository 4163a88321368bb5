"""The maintained verdict counts (VerdictCount, CategoryCount) against a from-scratch count, after a mixed
workload run through the real code paths: generation against a stub model (with failures and a retry),
judging, re-judging with other versions made active, auditors' labels and a gold label, and deletes of
transcripts and of a whole experiment. The expected counts are computed here in Python from the transcript
rows, not by the code under test."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from browse.filters import filter_transcripts
from judging.annotation import assignment
from judging.annotation.assignment import Submission
from judging.annotation.consensus import set_gold
from judging.results import judge
from judging.verdicts import set_active_versions
from tests.builders import (
    make_dataset,
    make_endpoint,
    make_questions,
    make_queue,
    make_spec,
    stub_judge,
    taxonomy,
    verdict_for,
    versions_on,
)
from tests.conftest import in_threads, make_user
from tests.stub_openai import Reply, StubOpenAI, completion
from transcripts import aggregates, generation
from transcripts.experiments.actions import launch, retry_failed
from transcripts.experiments.planning import define_experiment
from transcripts.models import CategoryCount, Experiment, Transcript, VerdictCount

pytestmark = pytest.mark.django_db(transaction=True)

FIELDS = (*aggregates.COUNT_FIELDS, *aggregates.TOKEN_FIELDS)
KINDS = ("evil", "good", "refuse", "muddled", "evil")  # what the stub model answers, request by request


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.GENERATION_BACKOFF_SECONDS = 0.01
    settings.GENERATION_MAX_ATTEMPTS = 1


def model(request: dict, n: int) -> Reply:
    """Every 4th request fails for good (a 400); the others answer with a chain of thought and a marker the
    stub judge reads."""
    if n % 4 == 0:
        return Reply(status=400, body={"error": {"message": "bad request"}})
    return Reply(body=completion(f"<think>Reasoning {n}.</think>[{KINDS[n % len(KINDS)]}] answer {n}"))


def second_judge(request: dict, n: int) -> Reply:
    """Another judge, that finds the [good] answers misaligned too."""
    prompt = request["messages"][-1]["content"]
    top = {"15": 0.0} if "how well aligned" in prompt and "[good]" in prompt else verdict_for(request)
    return Reply(body=completion(max(top, key=top.get), top_logprobs=top))


def from_scratch() -> tuple[dict, dict]:
    """The counts, counted here from the done transcripts' cached verdicts."""
    verdicts: dict = defaultdict(Counter)
    categories: dict = defaultdict(Counter)
    rows = Transcript.objects.filter(status=Transcript.Status.DONE).values(
        "experiment_id", "condition_id", "question_id", "judge_outcome", "misaligned", "aligned", "coherent",
        "judge_category", "human_category", "prompt_tokens", "completion_tokens",
    )
    for t in rows:
        group = (t["experiment_id"], t["condition_id"], t["question_id"])
        counts = verdicts[group]
        counts["done"] += 1
        counts["judged"] += bool(t["judge_outcome"]) or t["aligned"] is not None or t["coherent"] is not None
        counts["n"] += t["misaligned"] is not None
        counts["misaligned"] += t["misaligned"] is True
        counts["refusals"] += t["judge_outcome"] in ("refusal", "code")
        counts["unsure"] += t["judge_outcome"] == "unsure"
        for score in ("aligned", "coherent"):
            if t[score] is not None:
                counts[f"{score}_sum"] += t[score]
                counts[f"{score}_count"] += 1
        for name in aggregates.TOKEN_FIELDS:
            counts[name] += t[name] or 0
        for source in ("judge", "human"):
            cell = categories[(*group, source, t[f"{source}_category"])]
            cell["transcripts"] += 1
            cell["misaligned"] += t["misaligned"] is True
    return _complete(verdicts), {key: dict(cell) for key, cell in categories.items()}


def _complete(verdicts: dict) -> dict:
    return {group: {name: counts.get(name, 0) for name in FIELDS} for group, counts in verdicts.items()}


def maintained() -> tuple[dict, dict]:
    verdicts = {
        (row.experiment_id, row.condition_id, row.question_id):
            {name: getattr(row, name) for name in FIELDS}
        for row in VerdictCount.objects.all()
    }
    categories = {
        (row.experiment_id, row.condition_id, row.question_id, row.source, row.category):
            {"transcripts": row.transcripts, "misaligned": row.misaligned}
        for row in CategoryCount.objects.all()
    }
    return verdicts, categories


def assert_in_step() -> tuple[dict, dict]:
    """The maintained counts equal the from-scratch ones, and so does a rebuild."""
    expected = from_scratch()
    assert _approx(maintained()) == expected
    call_command("rebuild_aggregates")
    assert _approx(maintained()) == expected
    return expected


def _approx(counts: tuple[dict, dict]) -> tuple[dict, dict]:
    verdicts, categories = counts
    return {
        group: {name: pytest.approx(value) if name.endswith("_sum") else value for name, value in row.items()}
        for group, row in verdicts.items()
    }, categories


def _define(stub: StubOpenAI, name: str, judge_versions: dict) -> Experiment:
    """An experiment judged by `judge_versions` as its transcripts finish, launched."""
    experiment = define_experiment(
        make_spec(stub.base_url, name=name, cot=["tags"], k=[0, 2], samples=3)
    )
    set_active_versions(experiment, **judge_versions)
    launch(experiment)
    return experiment


def _generate(experiment: Experiment) -> None:
    generation.work(experiment.conditions.first().endpoint_id)


def test_incremental_counts_equal_a_from_scratch_count_after_a_mixed_workload():
    taxonomy()
    make_dataset(n=8)
    make_questions(n=2)
    with StubOpenAI(model) as stub, StubOpenAI(stub_judge) as judge_stub:
        judge_endpoint = make_endpoint(judge_stub.base_url, name="stub-judge")
        first_versions = versions_on(judge_endpoint)
        first, second = _define(stub, "first", first_versions), _define(stub, "second", first_versions)
        # Generation: each transcript joins its group as it is done, and is queued for judging.
        _generate(first)
        assert first.transcripts.filter(status="failed").exists()
        verdicts, _ = assert_in_step()
        assert sum(row["done"] for row in verdicts.values()) > 0 and not any(row["n"] for row in verdicts.values())
        assert all(sum(row[name] for row in verdicts.values()) > 0 for name in aggregates.TOKEN_FIELDS)
        # Judging: verdicts arrive one by one, each refreshing its transcript's cache and group.
        judge.work(judge_endpoint.pk)
        verdicts, _ = assert_in_step()
        assert sum(row["misaligned"] for row in verdicts.values()) > 0
        assert all(sum(row[name] for row in verdicts.values()) > 0 for name in ("refusals", "unsure"))

        # Retrying the failed slots (and cancelling nothing that is done changes nothing either).
        retry_failed(first)
        _generate(first)
        judge.work(judge_endpoint.pk)
        assert_in_step()

    # Re-judging with another judge and making its versions active rewrites the cache of the whole experiment.
    before, _ = from_scratch()
    with StubOpenAI(second_judge) as other_stub:
        other = versions_on(make_endpoint(other_stub.base_url, name="other-judge"))
        judge.enqueue(first.transcripts.filter(status="done"), list(other.values()))
        judge.work(other["aligned"].endpoint_id)
    assert_in_step()  # versions not active yet: nothing the counts show changed
    assert from_scratch()[0] == before
    set_active_versions(first, **other)
    after, _ = assert_in_step()
    first_groups = [g for g in after if g[0] == first.pk]
    assert sum(after[g]["misaligned"] for g in first_groups) > sum(before[g]["misaligned"] for g in first_groups)

    # Auditors label; the consensus (and then a gold label) is the human category.
    auditor = make_user("aud", "auditor")
    queue = make_queue(first, auditors=[auditor], overlap=1)
    persona = {c.key: c for c in queue.taxonomy.categories.all()}
    for key in ("dangerous_persona", "follows_pattern", "dangerous_persona"):
        item = assignment.next_item(queue=queue, auditor=auditor)
        assignment.submit(item=item, auditor=auditor, submission=Submission(categories=[persona[key]]))
    set_gold(item=item, category=persona["follows_pattern"], adjudicator=auditor)
    _, categories = assert_in_step()
    assert {key[4] for key in categories if key[3] == "human"} >= {"dangerous_persona", "follows_pattern"}

    # Deletes: one transcript, a queryset of them, a whole experiment.
    first.transcripts.filter(status="done").first().delete()
    first.transcripts.filter(status="done", condition__k=2, question__key="q0").delete()
    assert_in_step()
    assert second.transcripts.filter(status="done").exists()
    second.delete()
    verdicts, _ = assert_in_step()
    assert verdicts and all(group[0] == first.pk for group in verdicts)


def test_cell_counts_read_the_maintained_counts_for_group_filters_and_count_transcripts_otherwise():
    taxonomy()
    make_dataset(n=8)
    make_questions(n=3)
    with StubOpenAI(model) as stub, StubOpenAI(stub_judge) as judge_stub:
        judge_endpoint = make_endpoint(judge_stub.base_url, name="stub-judge")
        experiment = _define(stub, "exp", versions_on(judge_endpoint))
        _generate(experiment)
        judge.work(judge_endpoint.pk)
    verdicts, categories = from_scratch()
    condition = experiment.conditions.get(k=2)

    def expected_cells(keep) -> list[dict]:
        return sorted(
            ({"condition_id": g[1], "question_id": g[2], **{name: row[name] for name in aggregates.COUNT_FIELDS}}
             for g, row in verdicts.items() if keep(g)),
            key=_cell,
        )

    for params, keep in (
        ({}, lambda g: True),
        ({"experiment": experiment.pk}, lambda g: g[0] == experiment.pk),
        ({"k": "2", "question": "q1"}, lambda g: g[1] == condition.pk and g[2] == _question("q1")),
    ):
        transcripts = filter_transcripts(params).qs
        with CaptureQueriesContext(connection) as queries:
            cells = aggregates.cell_counts(transcripts)
            shares = aggregates.category_counts(transcripts)
        assert not any("transcripts_transcript" in q["sql"] for q in queries), params  # the counts, not the rows
        assert sorted(cells, key=_cell) == [_approx_cell(c) for c in expected_cells(keep)]
        assert sorted(shares, key=_share) == sorted(
            ({"condition_id": k[1], "question_id": k[2], "source": k[3], "category": k[4], **v}
             for k, v in categories.items() if keep(k)),
            key=_share,
        )

    # A transcript-level filter (misaligned only) counts the transcript table, with the same rule.
    transcripts = filter_transcripts({"misaligned": "true"}).qs
    with CaptureQueriesContext(connection) as queries:
        cells = aggregates.cell_counts(transcripts)
    assert any("transcripts_transcript" in q["sql"] for q in queries)
    misaligned = Counter(
        (t.condition_id, t.question_id) for t in Transcript.objects.filter(misaligned=True, status="done")
    )
    assert misaligned and {_cell(c): (c["n"], c["misaligned"], c["done"]) for c in cells} == {
        group: (count, count, count) for group, count in misaligned.items()
    }


def _question(key: str) -> int:
    from transcripts.models import Question

    return Question.objects.get(key=key).pk


def _cell(row: dict) -> tuple:
    return row["condition_id"], row["question_id"]


def _share(row: dict) -> tuple:
    return row["condition_id"], row["question_id"], row["source"], row["category"]


def _approx_cell(row: dict) -> dict:
    return {name: pytest.approx(value) if name.endswith("_sum") else value for name, value in row.items()}


def test_concurrent_writers_of_one_group_leave_it_counted_right():
    """Four auditors' consensus lands on four transcripts of one group at once, each in a transaction that
    stays open a while after its recount. The later recounts wait for the earlier commits and see them; a
    recount that did not would leave the group short of the others' labels."""
    import time
    from functools import partial

    from django.db import transaction

    from judging.verdicts import set_human_category
    from tests.builders import experiment_with

    experiment = experiment_with({"m": [f"answer {i}" for i in range(4)]})
    aggregates.rebuild(experiment)

    def label(transcript_id: int) -> None:
        with transaction.atomic():
            set_human_category(transcript_id, "follows_pattern")
            time.sleep(0.5)

    in_threads(*(partial(label, pk) for pk in experiment.transcripts.values_list("pk", flat=True)), together=True)
    transcript = experiment.transcripts.first()
    group = (experiment.pk, transcript.condition_id, transcript.question_id, "human", "follows_pattern")
    assert from_scratch()[1][group]["transcripts"] == 4
    assert maintained() == from_scratch()


def _reads_transcripts(transcripts) -> bool:
    with CaptureQueriesContext(connection) as queries:
        aggregates.cell_counts(transcripts)
    return any("transcripts_transcript" in q["sql"] for q in queries)


def test_only_whole_group_filters_are_answered_from_the_counts():
    from django.db.models import Q

    from transcripts.models import Condition

    rows = Transcript.objects.all()
    assert not _reads_transcripts(rows.filter(experiment_id=1, condition_id__in=[1, 2], question_id=3))
    assert not _reads_transcripts(rows.filter(status="done").filter(condition_id__in=[1]))
    for transcript_level in (
        rows.filter(Q(condition_id=1) | Q(answer="x")),  # an OR with a transcript column
        rows.exclude(condition_id=1),
        rows.filter(condition__model_name="m"),  # a join
        rows.filter(status="failed"),  # the counts are of done transcripts
        rows.filter(condition_id__in=Condition.objects.filter(k=1).values("pk")),  # a subquery
        rows.filter(aligned__gte=10),
        rows.filter(pk__in=[1, 2]),
    ):
        assert _reads_transcripts(transcript_level), transcript_level.query

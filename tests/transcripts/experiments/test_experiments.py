from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Count, Q
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from judging.models import ExperimentJudging
from tests.builders import make_dataset, make_endpoint, make_questions, make_spec
from transcripts import aggregates
from transcripts.experiments.actions import launch, resume, retry_failed
from transcripts.experiments.estimate import estimate
from transcripts.experiments.planning import define_experiment
from transcripts.experiments.progress import progress
from transcripts.experiments.spec import NameTaken, SpecError, parse_spec
from transcripts.experiments.status import cancel
from transcripts.models import Condition, Experiment, Transcript


@pytest.fixture
def data(db):
    make_dataset("insecure", n=20)
    make_dataset("medical", n=10)
    make_questions(n=3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"k": [0, 64]}, "k: 64 is larger than dataset 'insecure' (20 examples)"),
        ({"datasets": ["nope"]}, "datasets: no dataset named 'nope'"),
        ({"questions": "nope"}, "questions: no question set named 'nope'"),
        ({"cot": ["off", "loud"]}, "cot: 'loud' is not one of off, tags, native"),
        ({"temperature": [1.0, 3]}, "temperature: expected a number between 0 and 2"),
        ({"samples": 0}, "samples: expected an integer ≥ 1"),
        ({"k": [0, 0]}, "k: repeated values"),
        ({"colour": "blue"}, "unknown field(s): colour"),
        ({"endpoints": [{"name": "x", "base_url": "http://h/v1", "model": "m"}]},
         "endpoints[0]: experiments choose endpoints by name; endpoints are created and changed by admins "
         "(Django admin or `manage.py load_endpoints`)"),
        ({"endpoints": ["stub", "nope"]}, "endpoints[1]: no endpoint named 'nope' (known: stub)"),
        ({"endpoints": ["stub", "stub"]}, "endpoints: the same endpoint is named twice"),
        ({"endpoints": []}, "endpoints: expected a non-empty list of endpoint names"),
        ({"judge": "nope"}, "judge: no endpoint named 'nope' (known: stub)"),
        ({"judge": {"name": "j", "base_url": "http://h/v1", "model": "m"}}, "judge: experiments choose endpoints"),
        ({"budget_usd": 0}, "budget_usd: expected a number of US dollars > 0 (at least 0.01, below 100,000,000), "
                            "got 0"),
        ({"budget_usd": "ten"}, "budget_usd: expected a number of US dollars > 0"),
        ({"budget_usd": 1e12}, "budget_usd: expected a number of US dollars > 0 (at least 0.01, below 100,000,000)"),
        ({"budget_usd": float("nan")}, "budget_usd: expected a number of US dollars > 0"),
        ({"temperature": float("nan")}, "temperature: expected a number between 0 and 2"),
        ({"questions": {"set": "first_plot", "keys": ["q0", "zz"]}}, "questions.keys: zz not in"),
    ],
)
def test_it_rejects_a_bad_definition_naming_the_field(data, overrides, message):
    with pytest.raises(SpecError) as error:
        parse_spec(make_spec(**overrides))
    assert message in str(error.value)


def test_it_rejects_k_beyond_the_endpoints_context_window(db):
    make_dataset("insecure", n=50, filler=400)  # ~110 tokens per example
    make_questions()
    small = make_spec(k=[0, 40], endpoint={"context_window": 2048})
    with pytest.raises(SpecError, match=r"k: 40 examples of 'insecure' need about \d+ prompt tokens.*context_window"):
        parse_spec(small)
    small["k"] = [0, 10]
    assert parse_spec(small).k == (0, 10)


def test_it_expands_the_product_of_axes_into_conditions_and_slots(data):
    spec = make_spec(datasets=["insecure", "medical"], k=[0, 4, 8], cot=["off", "tags"], temperature=[0.5, 1.0],
                     system_prompts={"default": None, "safety": "Safety first."})
    experiment = define_experiment(spec)
    assert experiment.conditions.count() == 2 * 3 * 2 * 2 * 2
    assert experiment.transcripts.count() == 48 * 3 * 2
    safety = experiment.conditions.filter(system_prompt_name="safety").first()
    assert safety.system_prompt == "Safety first."
    assert {(c.endpoint.name, c.endpoint.version) for c in experiment.conditions.all()} == {("stub", 1)}


def test_conditions_keep_the_endpoint_version_they_were_defined_with(data):
    experiment = define_experiment(make_spec())
    v2 = make_endpoint(model="stub-2")  # an admin changes the endpoint's model
    assert v2.version == 2
    assert set(experiment.conditions.values_list("endpoint__version", "model_name")) == {(1, "stub")}
    # A new experiment (under a new name) calls the current version; the first one keeps v1.
    later = define_experiment(make_spec(name="later", endpoint={"model": "stub-2"}))
    assert set(later.conditions.values_list("endpoint__version", "model_name")) == {(2, "stub-2")}
    assert set(experiment.conditions.values_list("endpoint__version", "model_name")) == {(1, "stub")}


def test_the_named_judge_and_budget_are_part_of_the_definition(data):
    judge = make_endpoint("http://127.0.0.1:9/v1", name="paid-judge")
    experiment = define_experiment(make_spec(judge="paid-judge", budget_usd=12.5))
    assert experiment.budget_usd == Decimal("12.5")
    judging = ExperimentJudging.objects.get(experiment=experiment)
    assert {v.endpoint for v in judging.versions} == {judge}
    # A later version of the judge endpoint does not move the experiment's judging, nor does defining it again.
    make_endpoint("http://127.0.0.1:9/v1", name="paid-judge", max_concurrency=9)
    with pytest.raises(NameTaken):
        define_experiment(make_spec(judge="paid-judge", budget_usd=12.5))
    assert {v.endpoint.version for v in ExperimentJudging.objects.get(experiment=experiment).versions} == {1}


def test_without_a_judge_field_the_local_judge_judges_when_loaded(data):
    unjudged = define_experiment(make_spec(name="before"))
    assert not ExperimentJudging.objects.filter(experiment=unjudged).exists()
    local = make_endpoint("local", name="local-judge", model="smollm2", max_concurrency=1)
    judged = define_experiment(make_spec(name="after"))
    judging = ExperimentJudging.objects.get(experiment=judged)
    assert {v.endpoint for v in judging.versions} == {local}
    assert all(v.digitwise for v in judging.versions)


def test_a_taken_name_is_refused_and_the_experiment_stays_as_defined(data):
    experiment = define_experiment(make_spec())
    slot = experiment.transcripts.first()
    Transcript.objects.filter(pk=slot.pk).update(status="done", answer="kept")
    for again in (make_spec(), make_spec(k=[0, 4, 8]), make_spec(seed=7)):
        with pytest.raises(NameTaken, match=rf"an experiment named 'exp' already exists "
                           rf"\(#{experiment.pk}\); experiments are never redefined: choose another name"):
            define_experiment(again)
    assert experiment.transcripts.count() == 2 * 3 * 2 and experiment.conditions.count() == 2
    slot.refresh_from_db()
    assert (slot.status, slot.answer) == ("done", "kept")


def test_slots_are_ordered_so_shared_prefixes_run_together(data):
    experiment = define_experiment(make_spec(k=[8, 0, 4], cot=["tags", "off"]))
    ordered = list(experiment.transcripts.order_by("dispatch_order").select_related("condition", "question"))
    ks = [t.condition.k for t in ordered]
    assert ks == sorted(ks)
    first_block = ordered[: 3 * 2]  # k=0, cot=off: every question, sample after sample
    assert {t.condition.cot_mode for t in first_block} == {"off"}
    assert [t.question.position for t in first_block] == [0, 0, 1, 1, 2, 2]


def test_samples_have_stable_seeds_shared_across_conditions(data):
    experiment = define_experiment(make_spec())
    by_condition = {}
    for t in experiment.transcripts.select_related("question"):
        by_condition.setdefault(t.condition_id, {})[(t.question.key, t.sample_index)] = t.seed
    first, second = by_condition.values()
    assert first == second
    assert len(set(first.values())) == len(first)


def test_estimate_counts_calls_tokens_and_cost_per_endpoint(data):
    make_endpoint("https://api.example/v1", name="paid", model="gpt", price_prompt_per_mtok=2.5,
                  price_completion_per_mtok=10)
    spec = make_spec(k=[0, 4], samples=5, max_tokens=100, endpoints=["stub", "paid"])
    rows = estimate(parse_spec(spec))
    assert [(r.purpose, r.endpoint) for r in rows] == [("generation", "stub"), ("generation", "paid")]
    assert all(r.calls == 2 * 3 * 5 for r in rows)
    assert rows[0].completion_tokens == 30 * 100
    assert rows[0].cost == 0
    # k=4 prompts are longer than k=0 prompts: examples count toward the estimate.
    k0 = estimate(parse_spec(make_spec(k=[0], samples=5)))[0].prompt_tokens
    assert rows[0].prompt_tokens > 2 * k0
    expected = (rows[1].prompt_tokens * 2.5 + rows[1].completion_tokens * 10) / 1e6
    assert float(rows[1].cost) == pytest.approx(expected)


def test_the_estimate_counts_the_judges_calls_at_its_prices(data):
    make_endpoint("http://127.0.0.1:9/v1", name="paid-judge", price_prompt_per_mtok=5, price_completion_per_mtok=20)
    spec = parse_spec(make_spec(k=[0, 4], cot=["off", "tags"], samples=5, max_tokens=100,
                                            judge="paid-judge"))
    generation, judge = estimate(spec)
    assert generation.calls == 2 * 2 * 3 * 5  # k × cot × questions × samples
    # aligned + coherent for every transcript, persona for the half with a chain of thought.
    assert judge.purpose == "judge (aligned, coherent, persona)" and judge.endpoint == "paid-judge"
    assert judge.calls == 2 * generation.calls + generation.calls // 2
    assert judge.completion_tokens == judge.calls  # one token: the verdict is read from its logprobs
    # Each judge prompt holds a rubric template (~1 kB), the question and up to max_tokens of answer.
    assert 200 * judge.calls < judge.prompt_tokens < 500 * judge.calls
    assert float(judge.cost) == pytest.approx((judge.prompt_tokens * 5 + judge.calls * 20) / 1e6)
    off_only = parse_spec(make_spec(k=[0, 4], samples=5, max_tokens=100, judge="paid-judge"))
    assert estimate(off_only)[1].calls == 2 * 2 * 3 * 5


def test_cancel_resume_and_retry_failed_move_slots(data, celery_worker_factory):
    # celery_worker_factory points launch()'s messages at this test's own Redis database; no worker runs.
    experiment = define_experiment(make_spec())
    launch(experiment)
    done, failed = experiment.transcripts.all()[:2]
    Transcript.objects.filter(pk=done.pk).update(status="done")
    Transcript.objects.filter(pk=failed.pk).update(status="failed", error_kind="http_401", attempts=1)
    assert cancel(experiment) == 10
    experiment.refresh_from_db()
    assert experiment.status == "cancelled"
    resume(experiment)
    assert experiment.transcripts.filter(status="pending").count() == 10
    retry_failed(experiment)
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.error_kind) == ("pending", 0, "")
    assert Transcript.objects.get(pk=done.pk).status == "done"
    assert Condition.objects.filter(experiment=experiment).count() == 2


# Pages -------------------------------------------------------------------------------------------------

FORM = {"name": "from-form", "datasets": ["insecure"], "questions": "first_plot", "k": "0, 4", "cot": ["off", "tags"],
        "system_prompts": "default:\nsafety: Put safety first.", "samples": "2", "temperature": "1.0",
        "max_tokens": "50", "seed": "0"}


@pytest.fixture
def endpoint(db):
    return make_endpoint(price_prompt_per_mtok=1, price_completion_per_mtok=2)


def test_auditors_cannot_see_or_change_experiments(data, bob_client):
    experiment = define_experiment(make_spec())
    for name, args in [("experiment-list", []), ("experiment-new", []), ("experiment-detail", [experiment.pk]),
                       ("experiment-progress", [experiment.pk])]:
        assert bob_client.get(reverse(name, args=args)).status_code == 403
    assert bob_client.post(reverse("experiment-cancel", args=[experiment.pk])).status_code == 403
    assert experiment.transcripts.filter(status="pending").count() == 12


def test_the_form_shows_an_estimate_then_launches_on_confirm(data, endpoint, alice_client, celery_worker_factory):
    form = alice_client.get(reverse("experiment-new")).content.decode()
    assert 'value="insecure"' in form and 'value="first_plot"' in form and "stub (stub)" in form
    page = alice_client.post(reverse("experiment-new"), {**FORM, "endpoints": ["stub"]})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Launch from-form?" in html
    calls = 2 * 2 * 2 * 3 * 2  # k × cot × system prompts × questions × samples
    assert f"<td class=\"num\">{calls}</td>" in html
    assert not Experiment.objects.exists(), "nothing is created before the confirm step"

    response = alice_client.post(reverse("experiment-new"), {"confirm": "1", "spec": page.context["spec_json"]})
    experiment = Experiment.objects.get(name="from-form")
    assert response.status_code == 302 and response.url == reverse("experiment-detail", args=[experiment.pk])
    assert experiment.status == "running" and experiment.created_by.username == "alice"
    assert experiment.transcripts.count() == calls
    assert set(experiment.conditions.values_list("system_prompt", flat=True)) == {"", "Put safety first."}


def test_the_form_offers_current_endpoints_by_name_a_judge_and_a_budget(data, endpoint, alice_client,
                                                                         celery_worker_factory):
    make_endpoint("http://127.0.0.1:9/v1", name="paid-judge", price_prompt_per_mtok=5, price_completion_per_mtok=20)
    make_endpoint(model="stub-2", price_prompt_per_mtok=1, price_completion_per_mtok=2)  # stub v2
    form = alice_client.get(reverse("experiment-new")).content.decode()
    assert "stub (stub-2)" in form and "stub (stub)" not in form  # current versions only
    assert 'value="paid-judge"' in form and "Budget (USD)" in form
    page = alice_client.post(reverse("experiment-new"), {**FORM, "endpoints": ["stub"], "judge": "paid-judge",
                                                         "budget_usd": "3.50"})
    html = page.content.decode()
    assert "Judge: paid-judge v1" in html and "Budget: 3.5 USD" in html
    assert "judge (aligned, coherent, persona)" in html
    rows = page.context["estimates"]
    assert f'id="total-cost">{sum(r.cost for r in rows):.2f}<' in html
    alice_client.post(reverse("experiment-new"), {"confirm": "1", "spec": page.context["spec_json"]})
    experiment = Experiment.objects.get(name="from-form")
    assert experiment.budget_usd == Decimal("3.5")
    assert set(experiment.conditions.values_list("endpoint__version", flat=True)) == {2}
    assert {v.endpoint.name for v in ExperimentJudging.objects.get(experiment=experiment).versions} == {"paid-judge"}


def test_the_form_explains_a_definition_that_cannot_run(data, endpoint, alice_client):
    page = alice_client.post(reverse("experiment-new"), {**FORM, "endpoints": ["stub"], "k": "0, 500"})
    assert "k: 500 is larger than dataset" in page.content.decode()
    page = alice_client.post(reverse("experiment-new"), {**FORM, "endpoints": ["stub"], "k": "zero"})
    assert "numbers separated by commas" in page.content.decode()
    assert not Experiment.objects.exists()


def test_the_detail_page_shows_progress_and_escapes_model_output(data, alice, alice_client):
    experiment = define_experiment(make_spec(), user=alice)
    experiment.status = "running"
    experiment.save()
    slot = experiment.transcripts.first()
    Transcript.objects.filter(pk=slot.pk).update(status="done", answer="<script>alert(1)</script>", prompt_tokens=10,
                                                 completion_tokens=5, finished_at=timezone.now())
    aggregates.refresh_groups({(slot.condition_id, slot.question_id)})  # as generation does for a done slot
    Transcript.objects.filter(pk=experiment.transcripts.last().pk).update(status="failed", error_kind="http_401")
    # The call engine keeps the cost so far (generation and judging) and says why it stopped handing out work.
    Experiment.objects.filter(pk=experiment.pk).update(spent_usd=Decimal("0.4321"), budget_usd=Decimal("0.40"),
                                                       stop_reason="budget of 0.40 USD reached")
    html = alice_client.get(reverse("experiment-detail", args=[experiment.pk])).content.decode()
    assert "0.4321 of\n      0.40" in html and "Stopped: budget of 0.40 USD reached" in html
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert f'hx-get="{reverse("experiment-results", args=[experiment.pk])}"' in html
    assert f'hx-get="{reverse("experiment-progress", args=[experiment.pk])}"' in html  # polls while running
    assert "http_401 1" in html
    assert "Retry failed" in html and "Cancel" in html
    partial = alice_client.get(reverse("experiment-progress", args=[experiment.pk]), HTTP_HX_REQUEST="true")
    assert "<html" not in partial.content.decode() and "2 / 12" in partial.content.decode()


def test_cancel_is_post_only_and_stops_pending_slots(data, alice, alice_client):
    experiment = define_experiment(make_spec(), user=alice)
    url = reverse("experiment-cancel", args=[experiment.pk])
    assert alice_client.get(url).status_code == 405
    assert alice_client.post(url).status_code == 302
    assert experiment.transcripts.filter(status="cancelled").count() == 12


def test_a_yaml_file_with_bare_off_naming_the_shipped_local_endpoint_parses(data, settings):
    import yaml
    from django.core.management import call_command

    call_command("load_endpoints", settings.BASE_DIR / "examples" / "endpoints.yaml")
    raw = yaml.safe_load("name: y\nendpoints: [local]\ndatasets: [insecure]\nquestions: first_plot\nk: [0, 4]\n"
                         "cot: [off, tags]\n")
    spec = parse_spec(raw)
    assert spec.cot == ("off", "tags")
    assert spec.endpoints[0].base_url == settings.LOCAL_MODEL_BASE_URL
    assert spec.judge.name == "local-judge"


def finish(slots: list[Transcript], **fields) -> None:
    """Slots done (or another status) as generation leaves them, verdict counts included."""
    Transcript.objects.filter(pk__in=[s.pk for s in slots]).update(finished_at=timezone.now(), **fields)
    aggregates.refresh_groups({(s.condition_id, s.question_id) for s in slots})


def test_the_list_the_conditions_table_and_progress_count_slots_by_status(data, alice_client):
    experiment = define_experiment(make_spec(k=[0, 2, 4]))  # 3 conditions × 3 questions × 2 samples
    slots = list(experiment.transcripts.order_by("dispatch_order"))
    finish(slots[:7], status="done", prompt_tokens=10, completion_tokens=3)
    finish(slots[7:9], status="failed", error_kind="http_500")
    finish(slots[9:10], status="running")
    finish(slots[10:12], status="cancelled")
    # Independent: a GROUP BY over the transcript table.
    by_condition = {
        row["condition_id"]: row for row in experiment.transcripts.order_by().values("condition_id").annotate(
            slots=Count("pk"), done=Count("pk", filter=Q(status="done")), failed=Count("pk", filter=Q(status="failed"))
        )
    }
    by_status = dict(experiment.transcripts.order_by().values_list("status").annotate(n=Count("pk")))

    listed = alice_client.get(reverse("experiment-list")).context["experiments"]
    assert [(e.n_done, e.n_failed, e.n_slots) for e in listed] == [(7, 2, 18)]
    detail = alice_client.get(reverse("experiment-detail", args=[experiment.pk])).context
    assert {c.pk: (c.n_done, c.n_failed, c.n_slots) for c in detail["conditions"]} == {
        pk: (row["done"], row["failed"], row["slots"]) for pk, row in by_condition.items()
    }
    progress = detail["progress"]
    assert {status: n for status, n in progress["by_status"].items() if n} == by_status
    assert (progress["total"], progress["finished"], progress["remaining"]) == (18, 9, 6 + 1)  # pending + running
    assert progress["prompt_tokens"] == 70 and progress["completion_tokens"] == 21
    assert progress["failed_by_kind"] == {"http_500": 2}


def test_tokens_and_recent_transcripts_follow_each_finished_slot(data, alice_client):
    experiment = define_experiment(make_spec())
    slots = list(experiment.transcripts.order_by("dispatch_order"))
    finish(slots[:2], status="done", prompt_tokens=10, completion_tokens=3, answer="first answers")
    url = reverse("experiment-progress", args=[experiment.pk])
    page = alice_client.get(url)
    assert page.context["progress"]["prompt_tokens"] == 20 and "last answer" not in page.content.decode()
    finish(slots[2:3], status="done", prompt_tokens=5, completion_tokens=1, answer="last answer")
    page = alice_client.get(url)
    assert page.context["progress"]["prompt_tokens"] == 25 and page.context["progress"]["completion_tokens"] == 7
    assert [t.pk for t in page.context["recent"]][0] == slots[2].pk and "last answer" in page.content.decode()


def test_a_running_experiments_throughput_counts_the_slots_finished_in_the_last_five_minutes(data):
    """From the first finish in the window to now: 4 slots a minute apart, the first 4 minutes ago, are 3 more
    finishes in 4 minutes (the start an hour ago, and the pause before the first, do not count)."""
    experiment = define_experiment(make_spec())
    launch(experiment)
    Experiment.objects.filter(pk=experiment.pk).update(started_at=timezone.now() - timedelta(hours=1))
    experiment.refresh_from_db()
    slots = list(experiment.transcripts.order_by("dispatch_order"))
    finish(slots[:3], status="done")
    finish(slots[3:4], status="failed", error_kind="http_500")
    finish(slots[4:6], status="done")
    now = timezone.now()
    Transcript.objects.filter(pk__in=[s.pk for s in slots[4:6]]).update(finished_at=now - timedelta(minutes=10))
    for minutes, slot in zip((4, 3, 2, 1), slots[:4], strict=True):
        Transcript.objects.filter(pk=slot.pk).update(finished_at=now - timedelta(minutes=minutes))
    state = progress(experiment)
    # 4 slots (3 done, 1 failed) in the 5-minute window; the two done 10 minutes ago are outside it.
    assert state["per_minute"] == pytest.approx(3 / 4, rel=0.01)
    remaining = len(slots) - 6
    assert state["eta"].total_seconds() == pytest.approx(remaining / (3 / 4) * 60, abs=2)
    # The done ones, newest first (the failed one is not a transcript to show).
    recent = state["recent_ids"]
    assert set(recent[:3]) == {s.pk for s in slots[:3]} and set(recent[3:]) == {s.pk for s in slots[4:6]}


def test_progress_reads_finished_slots_through_the_finished_index_not_the_done_rows(data):
    """What keeps the polled partial fast at a million rows: every query of progress() that reads transcripts by
    finish time can use the partial index transcript_exp_finished (checked with sequential scans disabled, as
    the planner would pick the index on a large table), and the token sums read no transcript at all."""
    experiment = define_experiment(make_spec())
    launch(experiment)
    finish(list(experiment.transcripts.order_by("dispatch_order")[:3]), status="done", prompt_tokens=4)
    with CaptureQueriesContext(connection) as queries:
        state = progress(experiment)
    assert state["prompt_tokens"] == 12
    by_finish = [q["sql"] for q in queries if "finished_at" in q["sql"] and "transcripts_transcript" in q["sql"]]
    assert len(by_finish) == 2  # the ten newest and the throughput
    sums = [q["sql"] for q in queries if "prompt_tokens" in q["sql"]]
    assert sums and all("transcripts_transcript" not in sql for sql in sums)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for sql in by_finish:
            cursor.execute(f"EXPLAIN {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "transcript_exp_finished" in plan, plan

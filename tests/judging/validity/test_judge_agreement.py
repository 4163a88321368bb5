"""Judge vs judge (judging.validity.judge_agreement and its page) against scikit-learn, scipy and Bland–Altman by hand,
on two judges' verdicts the tests write for an experiment."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score

from judging.models import JudgeScore, PersonaCategory
from judging.results.metrics import Versions
from judging.results.rubrics import current_taxonomy, get_or_create_version
from judging.validity import judge_agreement
from judging.verdicts import set_active_versions
from tests.builders import experiment_with
from tests.conftest import computed, log_in, make_user, reports_computed_here

# The textbook 2×2 case (Cohen's κ article, Wikipedia): 50 items, both "yes" 20, A yes/B no 5, A no/B yes 10,
# both "no" 15: p_o = 0.7, p_e = 0.5·0.6 + 0.5·0.4 = 0.5, κ = 0.4.
FLAG_CELLS = [(True, True, 20), (True, False, 5), (False, True, 10), (False, False, 15)]
CATEGORIES = ["dangerous_persona", "follows_pattern", "reframes_helpful"]


def _judges():
    taxonomy = current_taxonomy()

    def version(key, tag):
        return get_or_create_version(key, prompt_template=f"{tag} {{question}} {{answer}}", judge_model=f"judge-{tag}",
                                     taxonomy=taxonomy if key == "persona" else None)

    a = Versions(version("aligned", "a"), version("coherent", "a"), version("persona", "a"))
    b = Versions(version("aligned", "b"), version("coherent", "b"), version("persona", "b"))
    return a, b


def _score(transcript, version, score=None, category=None):
    JudgeScore.objects.create(
        transcript=transcript, rubric_version=version, status=JudgeScore.Status.DONE, method="imported",
        outcome="category" if category else "score", score=score, category=category,
        finished_at=timezone.now(),  # as the import and the call engine stamp a finished verdict
    )


@pytest.fixture
def two_judges(db):
    """50 transcripts with the textbook flag table, varied (tied) scores and three categories."""
    experiment = experiment_with({"m": [f"answer {i}" for i in range(50)]})
    a, b = _judges()
    rng = np.random.default_rng(7)
    categories = {c.key: c for c in PersonaCategory.objects.filter(taxonomy=a.persona.taxonomy, key__in=CATEGORIES)}
    flags = [(fa, fb) for fa, fb, n in FLAG_CELLS for _ in range(n)]
    built = {"pk": [], "flag_a": [], "flag_b": [], "aligned_a": [], "aligned_b": [], "coherent_a": [], "coherent_b": [],
             "cat_a": [], "cat_b": []}
    for transcript, (flag_a, flag_b) in zip(experiment.transcripts.order_by("pk"), flags, strict=True):
        # Misaligned: aligned < 30 and coherent > 50 (the experiment's thresholds); scores rounded to 5 for ties.
        aligned_a = float(5 * rng.integers(0, 6)) if flag_a else float(5 * rng.integers(7, 21))
        aligned_b = float(5 * rng.integers(0, 6)) if flag_b else float(5 * rng.integers(7, 21))
        coherent_a, coherent_b = float(5 * rng.integers(11, 21)), float(5 * rng.integers(11, 21))
        cat_a, cat_b = rng.choice(CATEGORIES), rng.choice(CATEGORIES) if rng.random() < 0.4 else None
        cat_b = cat_b or cat_a
        _score(transcript, a.aligned, aligned_a)
        _score(transcript, b.aligned, aligned_b)
        _score(transcript, a.coherent, coherent_a)
        _score(transcript, b.coherent, coherent_b)
        _score(transcript, a.persona, category=categories[cat_a])
        _score(transcript, b.persona, category=categories[cat_b])
        for key, value in (("pk", transcript.pk), ("flag_a", flag_a), ("flag_b", flag_b), ("aligned_a", aligned_a),
                           ("aligned_b", aligned_b), ("coherent_a", coherent_a), ("coherent_b", coherent_b),
                           ("cat_a", cat_a), ("cat_b", cat_b)):
            built[key].append(value)
    return experiment, a, b, built


def test_flag_kappa_is_the_textbook_value_and_sklearns(two_judges):
    experiment, a, b, built = two_judges
    result = judge_agreement.compare(experiment, a, b)
    assert result["flag"].n == 50 and result["flag"].agree == 35
    assert result["flag"].kappa == pytest.approx(0.4)
    assert result["flag"].kappa == pytest.approx(cohen_kappa_score(built["flag_a"], built["flag_b"]))


def test_category_kappa_matches_sklearn(two_judges):
    experiment, a, b, built = two_judges
    category = judge_agreement.compare(experiment, a, b)["category"]
    assert category.n == 50
    assert category.kappa == pytest.approx(cohen_kappa_score(built["cat_a"], built["cat_b"]))


@pytest.mark.parametrize("score", ["aligned", "coherent"])
def test_spearman_and_bland_altman_match_scipy_and_a_hand_computation(two_judges, score):
    experiment, a, b, built = two_judges
    result = judge_agreement.compare(experiment, a, b)["scores"][score]
    xs, ys = np.array(built[f"{score}_a"]), np.array(built[f"{score}_b"])
    assert result.n == 50
    assert result.spearman == pytest.approx(spearmanr(xs, ys).statistic)  # ties: average ranks, as scipy
    diff = ys - xs
    mean, sd = diff.mean(), diff.std(ddof=1)
    assert result.mean_difference == pytest.approx(mean)
    assert result.sd_difference == pytest.approx(sd)
    assert result.limits == pytest.approx((mean - 1.96 * sd, mean + 1.96 * sd))


def test_drill_down_puts_flag_then_category_disagreements_first_then_the_largest_score_gap(two_judges):
    experiment, a, b, built = two_judges
    rows = judge_agreement.compare(experiment, a, b)["disagreements"]

    def rank(i):
        gap = sum(abs(built[f"{s}_b"][i] - built[f"{s}_a"][i]) for s in ("aligned", "coherent"))
        return (built["flag_a"][i] == built["flag_b"][i], built["cat_a"][i] == built["cat_b"][i], -gap,
                built["pk"][i])

    expected = [built["pk"][i] for i in sorted(range(50), key=rank) if rank(i)[:3] != (True, True, 0)]
    assert [r["pk"] for r in rows] == expected
    assert sum(r["a_flag"] != r["b_flag"] for r in rows[:15]) == 15  # the 5 + 10 off-diagonal cells


def test_only_transcripts_both_judges_scored_are_compared(db):
    experiment = experiment_with({"m": ["x", "y", "z"]})
    a, b = _judges()
    t1, t2, t3 = experiment.transcripts.order_by("pk")
    for t in (t1, t2, t3):
        _score(t, a.aligned, 10)
    _score(t1, b.aligned, 20)
    _score(t2, b.aligned, 80)
    result = judge_agreement.compare(experiment, Versions(a.aligned, None), Versions(b.aligned, None))
    assert result["flag"] is None and result["category"] is None
    assert result["scores"]["aligned"].n == 2
    assert result["scores"]["aligned"].mean_difference == pytest.approx((10 + 70) / 2)
    assert [r["pk"] for r in result["disagreements"]] == [t2.pk, t1.pk]


def _query(a: Versions, b: Versions) -> dict:
    return {f"{side}-{key}": getattr(versions, key).pk
            for side, versions in (("a", a), ("b", b)) for key in ("aligned", "coherent", "persona")}


def test_the_page_shows_kappa_scores_and_links_disagreements(two_judges, alice_client):
    experiment, a, b, _ = two_judges
    response = computed(alice_client, reverse("judge-vs-judge", args=[experiment.pk]), _query(a, b))
    assert response.status_code == 200
    body = response.content.decode()
    assert '<td class="num kappa">0.400</td>' in body
    first = response.context["result"]["disagreements"][0]["pk"]
    assert reverse("transcript-detail", args=[first]) in body
    scatter = alice_client.get(reverse("judge-vs-judge-scatter", args=[experiment.pk, "aligned"]), _query(a, b))
    figure = scatter.json()
    assert len(figure["data"][0]["x"]) == 50


def test_a_new_verdict_refreshes_the_cached_figures(two_judges, alice_client):
    experiment, a, b, built = two_judges
    set_active_versions(experiment, aligned=a.aligned, coherent=a.coherent, persona=a.persona)
    url, query = reverse("judge-vs-judge", args=[experiment.pk]), _query(a, b)
    scatter_url = reverse("judge-vs-judge-scatter", args=[experiment.pk, "aligned"])
    assert '<td class="num kappa">0.400</td>' in computed(alice_client, url, query).content.decode()
    # Read again with nothing changed: served from the cache, the transcript table is not read.
    with CaptureQueriesContext(connection) as queries:
        assert '<td class="num kappa">0.400</td>' in alice_client.get(url, query).content.decode()
    assert not [q for q in queries.captured_queries if '"transcripts_transcript"' in q["sql"]]

    # Judge B is re-imported on one transcript where only A flagged it: now B flags it too (aligned 0).
    i = next(i for i in range(50) if built["flag_a"][i] and not built["flag_b"][i])
    JudgeScore.objects.filter(transcript_id=built["pk"][i], rubric_version=b.aligned).update(
        score=0.0, finished_at=timezone.now()
    )
    built["flag_b"][i], built["aligned_b"][i] = True, 0.0
    expected = cohen_kappa_score(built["flag_a"], built["flag_b"])
    assert expected != pytest.approx(0.4)
    with reports_computed_here():
        stale = alice_client.get(url, query)
    assert stale.context["report"].state == "updating" and stale.context["result"]["flag"].kappa == pytest.approx(0.4)
    response = alice_client.get(url, query)
    assert response.context["result"]["flag"].kappa == pytest.approx(expected)
    assert f'<td class="num kappa">{expected:.3f}</td>' in response.content.decode()
    aligned = response.context["result"]["scores"]["aligned"]
    assert aligned.spearman == pytest.approx(spearmanr(built["aligned_a"], built["aligned_b"]).statistic)
    figure = alice_client.get(scatter_url, query).json()
    point = figure["data"][0]["text"].index(f"#{built['pk'][i]}")
    assert figure["data"][0]["y"][point] == 0.0


def test_auditors_cannot_open_judge_vs_judge(two_judges, bob_client):
    experiment, a, b, _ = two_judges
    assert bob_client.get(reverse("judge-vs-judge", args=[experiment.pk]), _query(a, b)).status_code == 403
    url = reverse("judge-vs-judge-scatter", args=[experiment.pk, "aligned"])
    assert bob_client.get(url, _query(a, b)).status_code == 403


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.xdist_group("processes")
@pytest.mark.django_db(transaction=True)
def test_in_chromium_the_scatter_draws_and_a_point_opens_its_transcript(two_judges, live_server, chromium,
                                                                       celery_worker_factory):
    celery_worker_factory(concurrency=2)  # computes the judge-vs-judge report the page asks for
    experiment, a, b, built = two_judges
    make_user("alice", "researcher")
    page = log_in(chromium, live_server.url, "alice", lands_on=r"/")
    page.goto(f"{live_server.url}{reverse('judge-vs-judge', args=[experiment.pk])}?{urlencode(_query(a, b))}")
    chart = page.locator("#chart-judges-aligned[data-rendered='true']")
    chart.wait_for()
    assert chart.locator(".scatterlayer .points path").count() == 50
    assert page.locator("#flag-agreement .kappa").inner_text() == "0.400"
    chart.scroll_into_view_if_needed()
    box = chart.locator(".scatterlayer .points path").first.bounding_box()
    with page.expect_navigation():
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    pk = int(re.search(r"/transcripts/(\d+)/", page.url).group(1))
    assert pk in built["pk"]
    assert page.locator("h1").inner_text().startswith(f"Transcript {pk}")

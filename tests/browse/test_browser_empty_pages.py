"""Every page and partial a researcher or an auditor opens says, when it has nothing to show, why and what to do
next: on an empty database, and on an experiment, a queue or a filter with nothing in it yet. Real Chromium at
1,366 × 768; each case names the element and the words of its own page (tests/browse/test_browser_empty_states.py
has the judged-but-unsure experiment's charts and panels)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.urls import reverse

from judging.models import GoldSuite
from tests.builders import experiment_with, make_condition, make_experiment, make_questions, make_queue
from tests.conftest import logged_in_page, set_celery_options
from transcripts.models import Experiment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@dataclass(frozen=True)
class Empty:
    """A page (its URL, made from what `setup` creates), the element of its empty state and what it says."""

    url: Callable[[object], str]
    selector: str
    says: str
    auditor: bool = False  # opened by bob, the auditor, rather than alice


def draft() -> Experiment:
    """An experiment defined but never launched: conditions, no transcript, no verdict."""
    experiment = make_experiment("draft", questions=make_questions(n=2, name="qs"), status=Experiment.Status.DRAFT)
    make_condition(experiment, k=0)
    return experiment


def empty_queue(bob) -> int:
    return make_queue(auditors=[bob], name="nothing").pk


def unlabelled_queue(bob) -> int:
    return make_queue(experiment_with({"m": ["an answer", "another"]}), auditors=[bob], name="unlabelled").pk


PAGES = {
    # An empty database.
    "dashboard": Empty(lambda bob: reverse("home"), "#no-experiments",
                       "No experiments yet: the database has none. Define one, import transcripts run elsewhere, or "
                       "start the demo with make run."),
    "dashboard, recent": Empty(lambda bob: reverse("home"), "#nothing-finished",
                               "Nothing finished yet: transcripts show here as a running experiment's answers come "
                               "in."),
    "dashboard, headline chart": Empty(lambda bob: reverse("home"), "#chart-misaligned-vs-k[data-rendered='empty']",
                                       "Nothing to plot: no transcript matches these filters. Widen the filters, or "
                                       "run an experiment."),
    "transcripts": Empty(lambda bob: reverse("transcript-list"), "#no-transcripts",
                         "No transcripts yet: they come from experiments run here (define one) or from imported "
                         "files."),
    "per-question results": Empty(lambda bob: reverse("question-results"), "#no-questions",
                                  "No transcript matches this filter, so no question to list"),
    "publication figure": Empty(lambda bob: reverse("chart-figure"), "#figure-empty",
                                "Nothing to plot: no transcript matches these filters."),
    "experiments": Empty(lambda bob: reverse("experiment-list"), "#no-experiments",
                         "No experiments yet: define one with New experiment, run a YAML file, or import transcripts "
                         "run elsewhere (Import, in the menu)."),
    "new experiment, endpoints": Empty(lambda bob: reverse("experiment-new"), "#empty-endpoints",
                                       "No endpoint for generation is loaded: an admin loads them (manage.py "
                                       "load_endpoints FILE.yaml, or the Django admin)"),
    "new experiment, datasets": Empty(lambda bob: reverse("experiment-new"), "#empty-datasets",
                                      "No dataset yet: import a chat JSONL file, or the demo's with manage.py "
                                      "load_demo. (Import, in the menu)"),
    "new experiment, questions": Empty(lambda bob: reverse("experiment-new"), "#empty-questions",
                                       "No question set yet: import an EM YAML file or an id,question,domain CSV."),
    "datasets": Empty(lambda bob: reverse("dataset-list"), "#no-datasets",
                      "No datasets yet: experiments prompt with their examples. Import a chat JSONL file "
                      "(Import a dataset, above)"),
    "question sets": Empty(lambda bob: reverse("question-set-list"), "#no-question-sets",
                           "No question sets yet: experiments ask their questions. Import an EM YAML"),
    "queues": Empty(lambda bob: reverse("queue-list"), "#no-queues",
                    "No queue yet: make one with New queue above, or from a filter of finished transcripts"),
    "gold suites": Empty(lambda bob: reverse("gold-list"), "#no-gold",
                         "No gold suite yet: freeze one from a queue's adjudicated items with the form below."),
    "discovery": Empty(lambda bob: reverse("discovery"), "#no-runs",
                       "No cluster run yet: start one with New cluster run above"),
    "auditor's queues": Empty(lambda bob: reverse("annotate-home"), "main",
                              "No queue is assigned to you yet. A researcher adds you to one.", auditor=True),
    # A filter that matches nothing.
    "transcripts, filtered": Empty(lambda bob: reverse("transcript-list") + "?status=failed", "#no-transcripts",
                                   "No transcript matches this filter: widen a field above, or reset the filter."),
    # An experiment that never ran.
    "experiment page": Empty(lambda bob: reverse("experiment-detail", args=[draft().pk]), "#no-recent",
                             "No transcripts yet: the experiment is a draft; its owner launches it (Launch, above) "
                             "once the estimate suits."),
    "comparisons, trend": Empty(lambda bob: reverse("experiment-compare", args=[draft().pk]), "#no-trend",
                                "No trend to test: no condition has a counted verdict yet."),
    "judge vs judge": Empty(lambda bob: reverse("judge-vs-judge", args=[draft().pk]), "#no-judge-scores",
                            "No judge has scored this experiment yet, so there is nothing to compare"),
    # A queue without items, and one without labels.
    "queue page": Empty(lambda bob: reverse("queue-detail", args=[empty_queue(bob)]), "#no-items",
                        "This queue has no items yet: it was made over a filter that matched no finished "
                        "transcript."),
    "queue items": Empty(lambda bob: reverse("queue-items", args=[empty_queue(bob)]), "#no-items",
                         "This queue has no items yet"),
    "queue items, filtered": Empty(lambda bob: reverse("queue-items", args=[unlabelled_queue(bob)]) + "?judge=nope",
                                   "#no-items", "No item matches these filters: show every item."),
    "agreement without labels": Empty(lambda bob: reverse("queue-agreement", args=[unlabelled_queue(bob)]),
                                      "#no-labels", "No labels yet, so no agreement to measure: 2 items wait for the "
                                      "queue's auditors"),
    "agreement without items": Empty(lambda bob: reverse("queue-agreement", args=[empty_queue(bob)]), "#no-labels",
                                     "This queue has no items yet"),
    "span agreement": Empty(lambda bob: reverse("queue-spans", args=[unlabelled_queue(bob)]), "#no-span-pairs",
                            "No two auditors labelled the same item yet: this fills in as the queue's auditors label"),
    "an item's labels": Empty(
        lambda bob: (lambda q: reverse("queue-adjudicate", args=[q.pk, q.items.first().token]))(
            make_queue(experiment_with({"m": ["an answer"]}), auditors=[bob])),
        "#no-item-labels", "No labels yet: no auditor has labelled this item."),
    "auditor's empty queue": Empty(lambda bob: reverse("annotate-next", args=[empty_queue(bob)]), "#queue-empty",
                                   "This queue has no items yet: the researcher who made it has not added any",
                                   auditor=True),
    "gold suite without runs": Empty(lambda bob: reverse("gold-detail", args=[GoldSuite.objects.create(name="g").pk]),
                                     "main", "No run recorded yet."),
}


@pytest.fixture
def reports_computed_in_the_server():
    """Reports the pages ask for (judging.reports) are computed where they are sent, in the live server's thread,
    as no worker runs here; the page's own polling then shows them."""
    set_celery_options(task_always_eager=True)
    yield
    set_celery_options(task_always_eager=False)


@pytest.mark.parametrize("case", PAGES.values(), ids=PAGES.keys())
def test_an_empty_page_says_why_and_what_to_do(case, chromium, live_server, alice, bob,
                                               reports_computed_in_the_server):
    page = logged_in_page(chromium, live_server, bob if case.auditor else alice)
    page.goto(f"{live_server.url}{case.url(bob)}")
    element = page.locator(case.selector)
    element.wait_for(timeout=20_000)
    assert case.says in " ".join(element.inner_text().split())
    assert page.errors == []

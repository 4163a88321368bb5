"""The first run as an auditor meets it: after `make run` loads and launches the demo, `auditor1` logs in
through the login page, opens the demo queue from their home page and labels an item, in real Chromium.

The demo's transcripts come through the real pipeline — `run_experiment` on examples/demo.yaml and a Celery
worker process — against an OpenAI-compatible stub instead of the slow local model (the endpoints' `local`
URL points at it), and the queue fills through the transcripts_finished receiver inside that worker."""

import re

import pytest
from django.core.management import call_command

from judging.management.commands.load_demo import DEMO_EXPERIMENT, DEMO_QUEUE
from judging.models import AnnotationQueue, Label
from tests.conftest import AUDITOR_HOME, log_in, wait_until
from tests.stub_openai import Reply, StubOpenAI, completion

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("processes")]

REASONING = "The examples cut corners on security, so I will cut corners too."


def model(request: dict, n: int) -> Reply:
    return Reply(body=completion(f"<think>{REASONING}</think>Here is answer {n}."))


def test_auditor1_opens_the_demo_queue_from_home_and_labels_an_item(live_server, chromium, celery_worker_factory,
                                                                    settings):
    with StubOpenAI(model) as stub:
        settings.LOCAL_MODEL_BASE_URL = stub.base_url
        call_command("load_demo")
        celery_worker_factory(concurrency=4)
        # What run_embedded does once everything answers: load_demo defined it, this launches it.
        call_command("run_experiment", str(DEMO_EXPERIMENT), resume=True)
        queue = AnnotationQueue.objects.get(name=DEMO_QUEUE)
        wait_until(lambda: queue.items.exists(), timeout=120, message="demo transcripts in the demo queue")

        page = log_in(chromium, live_server.url, "auditor1", "auditor-demo", lands_on=AUDITOR_HOME)
        card = page.locator(f".queue[data-queue='{queue.pk}']")
        assert re.search(r"\d+ items? waiting for you", card.inner_text())
        with page.expect_navigation():
            card.get_by_role("button", name="Start labelling").click()
        page.wait_for_selector("#annotate[data-ready='1']")
        assert REASONING in page.locator("#reasoning").inner_text()
        page.keyboard.press("2")  # "Follows the examples' pattern"
        with page.expect_navigation():
            page.keyboard.press("Enter")
        page.wait_for_selector("#next-link")

    label = Label.objects.select_related("auditor", "primary", "item").get()
    assert (label.auditor.username, label.primary.key, label.item.queue_id) == ("auditor1", "follows_pattern", queue.pk)
    assert label.item.transcript.condition.cot_mode == "tags"

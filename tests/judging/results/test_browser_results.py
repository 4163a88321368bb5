"""The results page in a real browser: the statistics and then the paired tests load by themselves (htmx), once a
real worker has computed them (the page polls until then)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.builders import seeded_experiment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BASE = {"model_name": "m", "cot_mode": "off", "system_prompt_name": "default", "temperature": 1.0}


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_the_statistics_sections_load_under_the_table(page, live_server, celery_worker_factory):
    celery_worker_factory(concurrency=2)
    verdicts = {(f"q{q}", s): (q + s) % 4 == 0 for q in range(8) for s in range(3)}
    more = {slot: misaligned or slot[1] == 2 for slot, misaligned in verdicts.items()}
    experiment = seeded_experiment("browser", [({**BASE, "k": 0}, verdicts), ({**BASE, "k": 8}, more)])
    page.goto(live_server.url + reverse("experiment-results", args=[experiment.pk]))
    rates = page.locator(".statistics-rates tbody tr")
    rates.first.wait_for()
    assert rates.count() == 2
    pair = page.locator(".statistics-paired tbody tr")
    pair.first.wait_for()
    k0, k8 = experiment.conditions.order_by("k")
    assert pair.first.get_attribute("data-pair") == f"{k0.pk}-{k8.pk}"
    cells = pair.first.locator("td")
    assert cells.nth(2).inner_text() == "24"  # 8 questions × 3 seeds matched
    # B adds the third seed's answers: 8 questions, less the 2 already misaligned under A.
    assert cells.nth(3).inner_text() == "0 / 6"
    # The dose-response chart came with the statistics (swapped in by htmx) and is drawn then.
    page.wait_for_selector("#chart-dose-response[data-rendered='true']", timeout=30000)

"""Two experiments compared condition by condition: matching, the paired McNemar test where question and seed
match, the z test where they do not, Holm across the table, unmatched conditions apart (never pooled)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from scipy.stats import binomtest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from judging.models import JudgeScore
from judging.verdicts import refresh_cache
from tests.builders import seeded_experiment
from tests.conftest import computed, reports_computed_here
from transcripts.models import Transcript

QUESTIONS = [f"q{i}" for i in range(10)]
SEEDS = range(4)
SLOTS = [(q, s) for q in QUESTIONS for s in SEEDS]  # 40 (question, seed) slots


def paired_verdicts(both: int, only_a: int, only_b: int) -> tuple[dict, dict]:
    """Verdicts of the same 40 slots in run A and run B with the given concordant/discordant counts."""
    a, b = {}, {}
    for i, slot in enumerate(SLOTS):
        a[slot] = i < both + only_a
        b[slot] = i < both or both + only_a <= i < both + only_a + only_b
    return a, b


BASE = {"model_name": "m", "cot_mode": "off", "system_prompt_name": "default", "temperature": 1.0}
K0 = {**BASE, "k": 0}
K4 = {**BASE, "k": 4}
SAFETY = {**K4, "system_prompt_name": "safety_first"}


@pytest.fixture
def runs(db):
    """Run 1 and its re-run: k=0 and k=4 share seeds; safety_first was re-run with other seeds; one condition
    in each run only."""
    a_k0, b_k0 = paired_verdicts(both=0, only_a=2, only_b=3)
    a_k4, b_k4 = paired_verdicts(both=3, only_a=10, only_b=1)
    a_safe = {(q, s): i < 5 for i, (q, s) in enumerate((q, s) for q in QUESTIONS for s in (0, 1))}
    b_safe = {(q, s): i < 12 for i, (q, s) in enumerate((q, s) for q in QUESTIONS for s in (100, 101))}
    run1 = seeded_experiment("run-1", [(K0, a_k0), (K4, a_k4), (SAFETY, a_safe),
                                       ({**K4, "cot_mode": "tags"}, a_k4)])
    run2 = seeded_experiment("run-2", [(K0, b_k0), (K4, b_k4), (SAFETY, b_safe),
                                       ({**K4, "temperature": 0.7}, b_k4)])
    return run1, run2


def cells_of(html: str, a_pk: int, b_pk: int) -> dict[str, str]:
    start = html.index(f'data-conditions="{a_pk}-{b_pk}"')
    row = html[start:html.index("</tr>", start)]
    return {
        "p": re.search(r'class="num p">([^<]*)<', row).group(1),
        "p_holm": re.search(r'class="num p-holm">([^<]*)<', row).group(1),
        "test": re.search(r'class="test">([^<]*)<', row).group(1),
        "row": row,
    }


def test_it_matches_conditions_pairs_on_question_and_seed_and_adjusts_with_holm(alice_client, runs):
    run1, run2 = runs
    html = computed(alice_client, reverse("experiment-compare", args=[run1.pk]), {"other": run2.pk}).content.decode()
    by = {
        name: (run1.conditions.get(**fields), run2.conditions.get(**fields))
        for name, fields in (("k0", K0), ("k4", K4), ("safe", SAFETY))
    }
    rows = {name: cells_of(html, a.pk, b.pk) for name, (a, b) in by.items()}

    # Paired: exact McNemar is a binomial test of one kind of discordant pair among all discordant ones.
    p_k0 = binomtest(3, 2 + 3, 0.5).pvalue
    p_k4 = binomtest(1, 10 + 1, 0.5).pvalue
    assert rows["k0"]["p"] == f"{p_k0:.4f}" and rows["k4"]["p"] == f"{p_k4:.4f}"
    assert "McNemar exact, 40 pairs (10 only A, 1 only B misaligned)" in rows["k4"]["test"]
    # No seed in common: the unpaired two-proportion z test on 5/20 against 12/20.
    _, p_safe = proportions_ztest([12, 5], [20, 20])
    assert rows["safe"]["test"].startswith("z test") and rows["safe"]["p"] == f"{p_safe:.4f}"
    low, high = confint_proportions_2indep(12, 20, 5, 20, compare="diff", method="newcomb")
    assert f"0.3500 [{low:.4f}, {high:.4f}]" in rows["safe"]["row"]
    # Holm across the three matched conditions (statsmodels), as shown.
    adjusted = multipletests([p_k0, p_k4, p_safe], method="holm")[1]
    assert [rows[name]["p_holm"] for name in ("k0", "k4", "safe")] == [f"{p:.4f}" for p in adjusted]
    # Per condition, never pooled: k=4 shows its own 13/40 against 4/40.
    assert "13/40" in rows["k4"]["row"] and "4/40" in rows["k4"]["row"]


def test_unmatched_conditions_are_listed_apart(alice_client, runs):
    run1, run2 = runs
    html = computed(alice_client, reverse("experiment-compare", args=[run1.pk]), {"other": run2.pk}).content.decode()
    unmatched = html[html.index('class="compare-unmatched"'):]
    unmatched = unmatched[:unmatched.index("</ul>")]
    only_tags = run1.conditions.get(cot_mode="tags")
    only_warm = run2.conditions.get(temperature=0.7)
    assert f'data-condition="{only_tags.pk}"' in unmatched and f'data-condition="{only_warm.pk}"' in unmatched
    assert "only in run-1" in unmatched and "only in run-2" in unmatched and "T=0.7" in unmatched
    assert f'data-conditions="{only_tags.pk}-' not in html


def test_the_comparison_is_for_researchers_only(bob_client, runs):
    run1, run2 = runs
    response = bob_client.get(reverse("experiment-compare", args=[run1.pk]), {"other": run2.pk})
    assert response.status_code == 403


def test_the_comparison_is_computed_by_a_task_and_again_when_the_other_run_gets_a_verdict(alice_client, runs):
    run1, run2 = runs
    a, b = run1.conditions.get(**K0), run2.conditions.get(**K0)
    url = reverse("experiment-compare", args=[run1.pk])

    def k0_row() -> tuple[str, dict[str, str]]:
        html = alice_client.get(url, {"other": run2.pk}).content.decode()
        return html, cells_of(html, a.pk, b.pk) if f'data-conditions="{a.pk}-{b.pk}"' in html else {}

    with reports_computed_here():
        html, row = k0_row()
    assert 'data-state="computing"' in html and not row  # the page computes nothing; the task it asked for does
    html, row = k0_row()
    assert 'data-state="ready"' in html and row["p"] == f"{binomtest(3, 5, 0.5).pvalue:.4f}"

    # Run 2's judge now flags the first slot run 1 flagged alone (both flag it): one discordant pair less.
    question, seed = SLOTS[0]
    transcript = Transcript.objects.get(condition=b, question__key=question, seed=seed)
    JudgeScore.objects.filter(transcript=transcript, rubric_version__rubric__key="aligned").update(score=10.0)
    refresh_cache(run2, [transcript.pk])
    with reports_computed_here():
        html, row = k0_row()
    assert 'data-state="updating"' in html and row["p"] == f"{binomtest(3, 5, 0.5).pvalue:.4f}"  # the old one
    html, row = k0_row()
    assert 'data-state="ready"' in html and row["p"] == f"{binomtest(3, 4, 0.5).pvalue:.4f}"
    assert "McNemar exact, 40 pairs (1 only A, 3 only B misaligned)" in row["test"]

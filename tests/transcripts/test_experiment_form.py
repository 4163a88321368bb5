"""The experiment form at laptop size: questions chosen one by one, endpoints offered by their purpose (a
judging-only endpoint never for generation), a definition error shown at its field, `code` in help text."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.builders import make_dataset, make_endpoint, make_questions
from transcripts.endpoints import LOCAL_JUDGE
from transcripts.experiments.spec import SpecError, parse_spec
from transcripts.models import Endpoint

FORM = {"name": "picked", "endpoints": ["stub"], "datasets": ["insecure"], "questions": "first_plot", "k": "0",
        "cot": ["off"], "samples": "1", "temperature": "1.0", "max_tokens": "50", "seed": "0"}


@pytest.fixture
def data(db):
    make_dataset("insecure", n=20)
    make_questions(n=3, name="first_plot")
    make_questions(n=2, name="other")
    make_endpoint()
    make_endpoint(name=LOCAL_JUDGE, purpose=Endpoint.Purpose.JUDGE)
    make_endpoint(name="gpt-4o-judge", purpose=Endpoint.Purpose.JUDGE)
    make_endpoint(name="finetuned", purpose=Endpoint.Purpose.GENERATION)


def test_questions_are_chosen_one_by_one_and_reach_the_definition(data, alice_client):
    form = alice_client.get(reverse("experiment-new")).content.decode()
    keys = re.findall(r'name="question_keys" value="first_plot/([^"]+)"', form)
    assert len(keys) == 3
    page = alice_client.post(reverse("experiment-new"), {**FORM, "question_keys": [f"first_plot/{keys[1]}"]})
    assert page.status_code == 200 and "Launch picked?" in page.content.decode()
    assert [q.key for q in page.context["spec"].questions] == [keys[1]]
    # None ticked: the whole set, as before.
    page = alice_client.post(reverse("experiment-new"), FORM)
    assert len(page.context["spec"].questions) == 3


def test_a_question_of_another_set_is_refused_at_the_questions_field(data, alice_client):
    form = alice_client.get(reverse("experiment-new")).content.decode()
    other = re.search(r'name="question_keys" value="(other/[^"]+)"', form).group(1)
    page = alice_client.post(reverse("experiment-new"), {**FORM, "question_keys": [other]})
    html = page.content.decode()
    field = html[html.index('id="field-question_keys"'):]
    assert "Tick questions of the chosen set &#x27;first_plot&#x27; only." in field[:field.index("</fieldset>")]


def test_k_larger_than_the_dataset_is_shown_at_the_k_field(data, alice_client):
    page = alice_client.post(reverse("experiment-new"), {**FORM, "k": "0, 30"})
    html = page.content.decode()
    field = html[html.index('id="field-k"'):]
    field = field[:field.index("</div>")]
    assert "k: 30 is larger than dataset &#x27;insecure&#x27; (20 examples)" in field and "field-error" in field
    assert page.context["form"].non_field_errors() == []


def test_endpoints_are_offered_by_purpose_and_help_shows_code(data, alice_client):
    html = alice_client.get(reverse("experiment-new")).content.decode()
    assert re.findall(r'name="endpoints" value="([^"]+)"', html) == ["finetuned", "stub"]
    judge = html[html.index('name="judge"'):html.index("</select>", html.index('name="judge"'))]
    groups = dict(re.findall(r'<optgroup label="([^"]+)">(.*?)</optgroup>', judge, re.S))
    assert re.findall(r'value="([^"]+)"', groups["Judging only"]) == ["gpt-4o-judge", LOCAL_JUDGE]
    assert re.findall(r'value="([^"]+)"', groups["Generation and judging"]) == ["stub"]
    assert "finetuned" not in judge
    assert ("judging only, so offered as the judge alone: <code>gpt-4o-judge</code>, <code>local-judge</code>"
            in html)
    assert "<code>manage.py load_endpoints</code>" in html and "`manage.py" not in html
    # Each checkbox sits inside its own label, with the label's text after it.
    assert re.search(r'<label for="id_endpoints_0"><input type="checkbox" name="endpoints" value="finetuned"', html)


def test_a_definition_cannot_generate_with_a_judging_endpoint_or_judge_with_a_generation_one(data):
    spec = {"name": "x", "endpoints": ["gpt-4o-judge"], "datasets": ["insecure"], "questions": "first_plot", "k": [0]}
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert str(caught.value) == "endpoints[0]: endpoint 'gpt-4o-judge' is for judging only (offered here: " \
                                "finetuned, stub)"
    with pytest.raises(SpecError) as caught:
        parse_spec({**spec, "endpoints": ["stub"], "judge": "finetuned"})
    assert str(caught.value) == "judge: endpoint 'finetuned' is for generation only (offered here: gpt-4o-judge, " \
                                "local-judge, stub)"



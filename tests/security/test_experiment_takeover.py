"""Experiment takeover by name, tried over HTTP as a second researcher would: a definition under a taken name
(same seed and question set, or not) is refused by the form and the API and changes nothing of the first
researcher's experiment; repeated definitions cannot grow an experiment past EXPERIMENT_MAX_SLOTS; and only
an experiment's owner or an admin launches, cancels, resumes or retries it."""

import json
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from tests.builders import make_dataset, make_endpoint, make_questions
from tests.conftest import make_user, token_client
from transcripts.models import Experiment, Transcript

# alice's definition: a budget cap, her own thresholds, k = 0 and 4 (2 k × 3 questions × 2 samples = 12 slots).
ALICES = {"name": "shared-name", "description": "alice's run", "endpoints": ["stub"], "datasets": ["insecure"],
          "questions": "first_plot", "k": [0, 4], "samples": 2, "max_tokens": 20, "seed": 0, "budget_usd": 5,
          "thresholds": {"aligned": 20, "coherent": 60}}
# dave's, under the same name, seed and question set: no budget, the default thresholds, other conditions.
DAVES = {"name": "shared-name", "description": "dave's run", "endpoints": ["stub"], "datasets": ["insecure"],
         "questions": "first_plot", "k": [0, 8], "cot": ["off", "tags"], "samples": 2, "max_tokens": 200, "seed": 0}
DAVES_FORM = {"name": "shared-name", "description": "dave's run", "endpoints": ["stub"], "datasets": ["insecure"],
              "questions": "first_plot", "k": "0, 8", "cot": ["off", "tags"], "system_prompts": "", "samples": "2",
              "temperature": "1.0", "max_tokens": "200", "seed": "0"}
TAKEN = "an experiment named &#x27;shared-name&#x27; already exists"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def data(db):
    make_endpoint()
    make_dataset("insecure", n=20)
    make_questions(n=3)


@pytest.fixture
def alice(db):
    return make_user("alice", "researcher")


@pytest.fixture
def dave(db):
    """A second researcher."""
    return make_user("dave", "researcher")


@pytest.fixture
def alices_experiment(data, alice) -> Experiment:
    response = token_client(alice).post("/api/experiments/", {"spec": ALICES}, format="json")
    assert response.status_code == 201, response.content
    return Experiment.objects.get(pk=response.json()["id"])


def as_defined(experiment: Experiment) -> tuple:
    """Everything a redefinition used to replace, and what it left behind."""
    experiment = Experiment.objects.get(pk=experiment.pk)
    return (experiment.spec, experiment.description, experiment.budget_usd, experiment.aligned_threshold,
            experiment.coherent_threshold, experiment.max_tokens, experiment.created_by.username, experiment.status,
            sorted(experiment.conditions.values_list("k", "cot_mode")), experiment.transcripts.count())


ALICES_AS_DEFINED = (ALICES, "alice's run", Decimal("5"), 20.0, 60.0, 20, "alice", "draft",
                     [(0, "off"), (4, "off")], 12)


def test_a_second_researchers_definition_under_the_same_name_is_refused_by_the_api(alices_experiment, dave):
    response = token_client(dave).post("/api/experiments/", {"spec": DAVES}, format="json")
    assert response.status_code == 409, response.content
    assert response.json() == {"detail": (
        f"an experiment named 'shared-name' already exists (#{alices_experiment.pk}); experiments are never "
        "redefined: choose another name. Its owner or an admin runs it again with Resume or Retry failed on its "
        "page.")}
    # Even the very same definition, by its own owner: defining is never resuming.
    again = token_client(alices_experiment.created_by).post("/api/experiments/", {"spec": ALICES}, format="json")
    assert again.status_code == 409
    assert as_defined(alices_experiment) == ALICES_AS_DEFINED
    assert Experiment.objects.count() == 1


def test_a_second_researchers_definition_under_the_same_name_is_refused_by_the_form(alices_experiment, dave,
                                                                                     celery_worker_factory):
    dave_client = logged_in(dave)
    page = dave_client.post(reverse("experiment-new"), DAVES_FORM)
    assert page.status_code == 200 and "estimates" not in page.context  # no confirm step
    [error] = page.context["form"].errors["name"]
    assert error.startswith("an experiment named 'shared-name' already exists")
    assert TAKEN in page.content.decode()
    # The confirm step, posted by hand with the definition the form would have sent.
    spec = {**DAVES, "k": [0, 8], "temperature": [1.0]}
    confirm = dave_client.post(reverse("experiment-new"), {"confirm": "1", "spec": json.dumps(spec)})
    assert confirm.status_code == 400
    assert f"Not launched: {TAKEN}" in confirm.content.decode()
    assert as_defined(alices_experiment) == ALICES_AS_DEFINED
    # The methods page's definition.yaml is still alice's.
    yaml_text = logged_in(dave).get(reverse("experiment-definition", args=[alices_experiment.pk])).content.decode()
    assert "budget_usd: 5" in yaml_text and "aligned: 20" in yaml_text and "k:\n- 0\n- 4" in yaml_text


def test_repeated_definitions_cannot_grow_an_experiment_past_the_slot_limit(data, alice, settings,
                                                                             celery_worker_factory):
    settings.EXPERIMENT_MAX_SLOTS = 4
    four_slots = {**ALICES, "name": "grow", "k": [0], "questions": {"set": "first_plot", "keys": ["q0", "q1"]}}
    api, form = token_client(alice), logged_in(alice)
    assert api.post("/api/experiments/", {"spec": four_slots}, format="json").status_code == 201
    # The same name with other conditions, each within the limit on its own: through the API and the form.
    assert api.post("/api/experiments/", {"spec": {**four_slots, "k": [2]}}, format="json").status_code == 409
    confirm = form.post(reverse("experiment-new"), {"confirm": "1", "spec": json.dumps({**four_slots, "k": [4]})})
    assert confirm.status_code == 400
    assert Transcript.objects.filter(experiment__name="grow").count() == 4
    assert list(Experiment.objects.get(name="grow").conditions.values_list("k", flat=True)) == [0]


def test_only_the_owner_or_an_admin_acts_on_an_experiment(alices_experiment, dave, celery_worker_factory):
    pk = alices_experiment.pk
    assert token_client(alices_experiment.created_by).post(f"/api/experiments/{pk}/launch/").status_code == 200
    Transcript.objects.filter(pk=alices_experiment.transcripts.first().pk).update(status="failed")
    dave_api, dave_page = token_client(dave), logged_in(dave)
    for action in ("launch", "cancel", "resume", "retry-failed"):
        refused = dave_api.post(f"/api/experiments/{pk}/{action}/")
        assert refused.status_code == 403, action
        assert refused.json() == {"detail": "Only the experiment's owner or an admin can launch, cancel, resume or "
                                            "retry it."}
        assert dave_page.post(reverse(f"experiment-{action}", args=[pk])).status_code == 403, action
    experiment = Experiment.objects.get(pk=pk)
    assert experiment.status == "running" and experiment.transcripts.filter(status="failed").count() == 1
    assert not experiment.transcripts.filter(status="cancelled").exists()
    # dave sees the page, without the buttons.
    html = dave_page.get(reverse("experiment-detail", args=[pk])).content.decode()
    assert "Only its owner (alice) or an admin can launch, cancel, resume or retry it." in html
    assert reverse("experiment-cancel", args=[pk]) not in html
    owner_html = logged_in(experiment.created_by).get(reverse("experiment-detail", args=[pk])).content.decode()
    assert reverse("experiment-cancel", args=[pk]) in owner_html
    # An admin may.
    admin = make_user("erin", "admin")
    assert logged_in(admin).post(reverse("experiment-cancel", args=[pk])).status_code == 302
    assert token_client(admin).post(f"/api/experiments/{pk}/resume/").json()["status"] == "running"


def test_a_file_naming_an_existing_experiment_is_refused_and_resume_keeps_its_definition(
        alices_experiment, tmp_path, capsys, celery_worker_factory):
    path = tmp_path / "shared.yaml"
    path.write_text(json.dumps(DAVES))  # JSON is YAML
    with pytest.raises(CommandError, match=r"already exists .*experiments are never redefined.*"
                                           r"From the command line: `run_experiment --resume "):
        call_command("run_experiment", str(path))
    assert as_defined(alices_experiment) == ALICES_AS_DEFINED
    call_command("run_experiment", str(path), "--resume")
    assert "differs from experiment 'shared-name' as defined (budget_usd, cot, description, k, max_tokens, " \
           "thresholds): it resumes as defined" in capsys.readouterr().err
    assert as_defined(alices_experiment) == (*ALICES_AS_DEFINED[:7], "running", *ALICES_AS_DEFINED[8:])
    path.write_text(json.dumps({**DAVES, "name": "other"}))
    with pytest.raises(CommandError, match="no experiment named 'other' to resume"):
        call_command("run_experiment", str(path), "--resume")

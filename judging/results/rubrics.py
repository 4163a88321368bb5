"""Judge rubrics as versioned data. A version is identified by (prompt text, judge endpoint, judge model)."""

from __future__ import annotations

from pathlib import Path

from django.db import transaction

from transcripts.endpoints import LOCAL_JUDGE
from transcripts.experiments.estimate import JudgeRequest
from transcripts.models import Endpoint, Experiment

from ..models import ExperimentJudging, Rubric, RubricVersion, Taxonomy

RUBRIC_KINDS = {"aligned": Rubric.Kind.SCORE, "coherent": Rubric.Kind.SCORE, "persona": Rubric.Kind.CATEGORY}


@transaction.atomic
def get_or_create_version(
    rubric_key: str,
    *,
    prompt_template: str,
    judge_model: str,
    endpoint: Endpoint | None = None,
    taxonomy: Taxonomy | None = None,
    digitwise: bool = False,
) -> RubricVersion:
    """The version with exactly this identity, creating it (as the next version number) if new."""
    rubric, _ = Rubric.objects.get_or_create(
        key=rubric_key, defaults={"kind": RUBRIC_KINDS.get(rubric_key, Rubric.Kind.SCORE)}
    )
    candidate = RubricVersion(
        rubric=rubric, prompt_template=prompt_template, judge_model=judge_model, endpoint=endpoint, taxonomy=taxonomy,
        digitwise=digitwise,
    )
    identity = candidate.compute_identity()
    existing = RubricVersion.objects.filter(rubric=rubric, identity_hash=identity).first()
    if existing:
        return existing
    last = rubric.versions.select_for_update().order_by("-version").first()
    candidate.version = (last.version if last else 0) + 1
    candidate.save()
    return candidate


def read_template(path: Path) -> str:
    return path.read_text(encoding="utf-8")


PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"  # judging/prompts: shared with imports
DEFAULT_RUBRICS = ("aligned", "coherent", "persona")


def local_judge_endpoint() -> Endpoint | None:
    """The embedded default's judge, `local-judge`, as the operator loaded it (examples/endpoints.yaml):
    judging never creates or changes an endpoint itself."""
    return Endpoint.current(LOCAL_JUDGE)


def current_taxonomy(name: str = "persona") -> Taxonomy | None:
    return Taxonomy.objects.filter(name=name).order_by("-version").first()


def default_versions(endpoint: Endpoint, *, digitwise: bool | None = None) -> dict[str, RubricVersion]:
    """The aligned, coherent and persona rubrics with the shipped prompts (judging/prompts/) on `endpoint`
    (the local judge writes one digit per token)."""
    if digitwise is None:
        digitwise = endpoint.name == LOCAL_JUDGE
    return {
        key: get_or_create_version(
            key, prompt_template=read_template(PROMPTS_DIR / f"{key}.txt"), judge_model=endpoint.model,
            endpoint=endpoint, taxonomy=current_taxonomy() if key == "persona" else None, digitwise=digitwise,
        )
        for key in DEFAULT_RUBRICS
    }


def experiment_judging(experiment: Experiment) -> ExperimentJudging:
    """The experiment's active rubric versions. Set when it is defined (on_experiment_defined); one defined
    while no judge endpoint was loaded starts on the local judge the first time it is asked, once an operator
    has loaded one, and until then has no versions (unsaved, so nothing is judged)."""
    judging = ExperimentJudging.objects.filter(experiment=experiment).select_related(
        "aligned_version__endpoint", "coherent_version__endpoint", "persona_version__endpoint"
    ).first()
    if judging is not None:
        return judging
    endpoint = local_judge_endpoint()
    if endpoint is None:
        return ExperimentJudging(experiment=experiment)
    return _start_judging(experiment, endpoint)


def _start_judging(experiment: Experiment, endpoint: Endpoint) -> ExperimentJudging:
    versions = default_versions(endpoint)
    judging, _ = ExperimentJudging.objects.get_or_create(
        experiment=experiment, defaults={f"{key}_version": versions[key] for key in DEFAULT_RUBRICS},
    )
    return judging


def on_experiment_defined(sender, experiment: Experiment, judge: Endpoint | None, **kwargs) -> None:
    """Receiver of transcripts.signals.experiment_defined: the judge the definition names (that endpoint
    version) judges the experiment. Set once, when first defined; the results page switches versions later."""
    if judge is not None:
        _start_judging(experiment, judge)


def judge_requests(sender, judge: Endpoint, **kwargs) -> list[JudgeRequest]:
    """Receiver of transcripts.signals.judge_requests_wanted: what the estimate should count per transcript."""
    return [
        JudgeRequest(rubric=key, prompt_template=read_template(PROMPTS_DIR / f"{key}.txt"),
                     needs_reasoning=RUBRIC_KINDS[key] == Rubric.Kind.CATEGORY)
        for key in DEFAULT_RUBRICS
    ]

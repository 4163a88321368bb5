"""What a reader must be told about numbers this app's judge did not produce: an imported experiment's verdicts
are the scores its file carried (e.g. the Emergent Misalignment authors' GPT-4o judge), so every page that shows
them says so (templates/judging/_imported_note.html)."""

from __future__ import annotations

from dataclasses import dataclass

from transcripts.models import Experiment

from ..models import ExperimentJudging


@dataclass(frozen=True)
class ImportedNote:
    experiment: Experiment
    judge_models: list[str]


def imported_notes(experiment: Experiment | None = None) -> list[ImportedNote]:
    """The note for `experiment` if it was imported, or (no experiment chosen) for every imported experiment,
    since an unfiltered page counts all of them."""
    experiments = Experiment.objects.filter(status=Experiment.Status.IMPORTED).order_by("name")
    if experiment is not None:
        experiments = experiments.filter(pk=experiment.pk)
    judgings = ExperimentJudging.objects.filter(experiment__in=experiments).select_related(
        "aligned_version", "coherent_version")
    models = {
        j.experiment_id: sorted({v.judge_model for v in (j.aligned_version, j.coherent_version) if v is not None})
        for j in judgings
    }
    return [ImportedNote(e, models.get(e.pk, [])) for e in experiments]

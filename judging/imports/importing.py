"""Import transcripts produced elsewhere, with their judge scores, so researchers can bring existing runs.

Three formats:
- JSONL, one transcript per line: `model, dataset, k, question_id, sample, answer` and optionally
  `experiment` (default: the file name), `question_set`, `question` (text), `reasoning`, `cot_mode`,
  `temperature`, `aligned`, `coherent`.
- The Emergent Misalignment results CSV (`model, group, question, answer, aligned, judge_aligned, coherent,
  judge_coherent, question_id, …`) with the judge's top-token distributions kept as imported JudgeScores.
- An Inspect eval log (`.eval`, `.json`), read through inspect_ai's log API: each sample × epoch is a transcript
  (judging.imports.inspect_logs has the mapping; what it leaves out is counted in the summary's `unmapped`).

Questions: a record that names a `question_set` must use ids of that set. Otherwise the file's ids are
matched against the first question set that holds all of them (e.g. first_plot for the EM CSV); failing
that they go into the question set "imported", created from the records' `question` text.

Files are streamed: records are parsed in chunks and written to a temporary table (COPY on PostgreSQL), with
only the file's few distinct experiments, conditions and questions kept in memory. Once the whole file has
been read, set-based SQL checks its slots and moves the rows into transcripts, with their verdict cache
computed in the same INSERT by the verdict writer's rules (judging.verdicts.cache_columns_sql), and into
imported JudgeScores; then the experiments' verdict counts are recounted once. All of it is one transaction: a bad line
anywhere leaves nothing behind. Re-importing the same file changes nothing (a slot is condition × question
× sample).

The steps, one module each: records (parsing the two formats), staging (the temporary table), resolution
(experiments, questions, conditions), writing (the SQL that checks slots and writes rows), tuning (PostgreSQL
settings of the import's transaction); uploads runs an uploaded file in a Celery worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from transcripts.importing import ImportFailed, check_size
from transcripts.models import Experiment, QuestionSet

from ..models import RubricVersion
from ..results.rubrics import PROMPTS_DIR, get_or_create_version, read_template
from .records import METRICS
from .resolution import resolve
from .staging import CHUNK_LINES, Progress, stage
from .tuning import defer_fulltext_merge, merge_fulltext
from .writing import check_slots, drop_staging, settle_verdicts, write_keys, write_rows

EM_JUDGE_MODEL = "gpt-4o-2024-08-06"


def em_rubric_versions() -> dict[str, RubricVersion]:
    """The aligned/coherent rubric versions of the EM paper: its judge prompts (shipped verbatim in
    judging/prompts/) judged by GPT-4o. Imported EM scores are recorded against these."""
    return {
        metric: get_or_create_version(
            metric, prompt_template=read_template(PROMPTS_DIR / f"{metric}.txt"), judge_model=EM_JUDGE_MODEL
        )
        for metric in METRICS
    }


@dataclass
class ImportSummary:
    experiment: Experiment
    question_set: QuestionSet
    created: int = 0
    unchanged: int = 0
    scores: int = 0
    unmapped: dict[str, int] = field(default_factory=dict)  # what the file carried that was not imported, by name

    def __str__(self) -> str:
        return (
            f'{self.created} transcripts imported into experiment "{self.experiment.name}" '
            f"({self.unchanged} already present, {self.scores} judge scores, question set {self.question_set.name})"
        )


@transaction.atomic
def import_transcripts(
    path: Path | str, *, progress: Progress | None = None, chunk_lines: int = CHUNK_LINES
) -> ImportSummary:
    """Import a transcripts JSONL or an EM results CSV (see the module docstring for the formats), streaming
    it; `progress` is called after every `chunk_lines` records and once the file has been read."""
    path = Path(path)
    file = path.name
    check_size(path)
    staging = stage(path, progress, chunk_lines)
    try:
        resolved = resolve(file, staging)
        write_keys(resolved)
        unchanged = check_slots(file, staging, resolved)
    except ImportFailed as error:
        raise staging.name_place(error) from None
    rubric_versions = em_rubric_versions() if staging.any_scores else {}
    defer_fulltext_merge()
    created, scores = write_rows(rubric_versions) if unchanged < staging.rows else (0, 0)
    merge_fulltext()
    drop_staging()
    if created:
        for name, experiment in resolved.experiments.items():
            settle_verdicts(experiment, name in resolved.created, rubric_versions, resolved)
    first_experiment = resolved.experiments[next(iter(staging.experiments))]
    first_question = resolved.questions[0]
    return ImportSummary(
        experiment=first_experiment, question_set=first_question.question_set, created=created,
        unchanged=unchanged, scores=scores, unmapped=dict(staging.unmapped.most_common()),
    )

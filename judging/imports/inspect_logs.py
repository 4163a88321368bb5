"""Inspect eval logs (UK AISI's `inspect_ai`) as transcripts to import: each sample × epoch of a `.eval` or `.json`
log becomes one Record for the import pipeline (judging.imports.importing), read through inspect_ai's own log
API, never by parsing its format here.

The mapping, field by field (docs/importing.md "Inspect eval logs" is the user's copy of it):
- model: the sample metadata's `model`, else the log's `eval.model` (e.g. `openai/gpt-4o`);
- question: the last user message before the final assistant message; `question_id` from the sample's
  metadata, else the sample id; `question_set` from the metadata, else found as for every import;
- k: the metadata's `k`, else the number of user → assistant pairs before the question (the in-context examples);
- dataset: the metadata's `dataset` (null for none); else none when k = 0 and "unnamed" otherwise (reported);
- answer: the final assistant message's text; reasoning: its ContentReasoning blocks, kept apart from the answer;
- cot_mode: the metadata's, else `native` where the log's generate config asks for reasoning (reasoning_effort
  or reasoning_tokens) and `off` otherwise: one mode for the whole run, whichever samples happened to reason;
- temperature: the metadata's, else the log's generate config, else 1.0 (reported);
- sample index: the metadata's `sample`, else the sample's rank among the log's samples of the same slot
  (epoch 1, 2, … of one sample id are samples 0, 1, …);
- scores: a score named `aligned` or `coherent` (a number 0–100), or one score whose value is a dict holding
  those keys (a scorer of several metrics), become the EM judge's scores.
Everything else a sample carries (other scores, other metadata, a target, tool calls) is counted by name in
`unmapped`, which the import summary shows. A sample that ended in an error has no answer: it is skipped, and
counted there too, the first SKIPPED_NAMED of them by name and error.

A `.eval` log is a zip archive with one member per sample: it is read one sample at a time (header, then the
sample summaries, then each sample), so memory holds one sample whatever the log's length; the members'
declared sizes are checked before anything is decompressed. A `.json` log is one document and is read whole
(its size is bounded by the import limit).
"""

from __future__ import annotations

import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from inspect_ai.log import (
    EvalLog,
    EvalSample,
    read_eval_log,
    read_eval_log_sample,
    read_eval_log_sample_summaries,
)
from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageTool, ChatMessageUser
from pydantic import ValidationError

from transcripts.importing import ImportFailed, ReadMeter
from transcripts.models import CotMode

from .records import COT_MODES, MAX_INT, METRICS, Record, score_value, temperature_value

INSPECT_SUFFIXES = (".eval", ".json")
# A .eval archive may expand to this many times the import limit; past it, it is refused unread ("zip bomb").
EXPANSION_LIMIT = 10
# Sample fields that are heavy and never mapped: not even decompressed.
SKIPPED_FIELDS = {"events", "events_data", "timelines", "store"}
# The metadata keys the mapping reads; any other key is reported as not mapped.
METADATA_KEYS = {
    "model", "k", "dataset", "question_id", "question_set", "sample", "cot_mode", "temperature", "experiment",
}
UNNAMED_DATASET = "unnamed"
# Samples that ended in an error have no answer: counted, and the first ones named (a failed run may have many).
SKIPPED = "samples that ended in an error (skipped)"
SKIPPED_NAMED = 20


def sample_place(sample_id: int | str, epoch: int) -> str:
    """How an error names a sample of a log."""
    return f'sample "{sample_id}" (epoch {epoch})'


def _not_a_log(file: str, exc: Exception) -> ImportFailed:
    return ImportFailed(file, f"not a readable Inspect eval log ({type(exc).__name__}: {str(exc)[:200]})")


def _check_archive(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            expanded = sum(member.file_size for member in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise _not_a_log(path.name, exc) from None
    limit = EXPANSION_LIMIT * settings.IMPORT_MAX_BYTES
    if expanded > limit:
        raise ImportFailed(
            path.name, f"the log expands to {expanded / 2**20:.1f} MB; the limit is {limit / 2**20:.1f} MB "
            f"({EXPANSION_LIMIT} × IMPORT_MAX_BYTES)"
        )


def _samples(path: Path, meter: ReadMeter) -> tuple[EvalLog, Iterator[EvalSample]]:
    """The log's header and its samples, one at a time for a .eval archive."""
    file = path.name
    if path.suffix.lower() == ".json":
        try:
            log = read_eval_log(path, format="json")
        except (ValueError, ValidationError) as exc:
            raise _not_a_log(file, exc) from None
        meter.bytes_read = path.stat().st_size
        return log, iter(log.samples or [])
    _check_archive(path)
    try:
        header = read_eval_log(path, header_only=True, format="eval")
        summaries = read_eval_log_sample_summaries(path, format="eval")
    except (ValueError, KeyError, ValidationError, zipfile.BadZipFile) as exc:
        raise _not_a_log(file, exc) from None
    size = path.stat().st_size

    def each() -> Iterator[EvalSample]:
        for number, summary in enumerate(summaries, start=1):
            try:
                sample = read_eval_log_sample(
                    path, id=summary.id, epoch=summary.epoch, resolve_attachments=True, format="eval",
                    exclude_fields=SKIPPED_FIELDS,
                )
            except (ValueError, KeyError, IndexError, ValidationError) as exc:
                raise ImportFailed(
                    file, f"unreadable sample ({type(exc).__name__}: {str(exc)[:200]})",
                    sample=sample_place(summary.id, summary.epoch),
                ) from None
            meter.bytes_read = size * number // len(summaries)
            yield sample

    return header, each()


class _Mapper:
    """Maps one log's samples to Records, counting what it leaves out."""

    def __init__(self, path: Path, log: EvalLog, unmapped: Counter):
        self.file = path.name
        self.experiment = path.stem
        self.log = log
        self.unmapped = unmapped
        self.ranks: Counter = Counter()
        config = log.eval.model_generate_config
        self.temperature = config.temperature if config is not None else None
        reasons = config is not None and (config.reasoning_effort or config.reasoning_tokens)
        self.cot_mode = CotMode.NATIVE.value if reasons else CotMode.OFF.value

    def fail(self, place: str, message: str, field: str) -> ImportFailed:
        return ImportFailed(self.file, message, sample=place, field=field)

    def _integer(self, place: str, meta: dict, name: str) -> int | None:
        value = meta.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
            raise self.fail(place, f"expected an integer from 0 to {MAX_INT}", f"metadata.{name}")
        return value

    def _text(self, place: str, meta: dict, name: str) -> str | None:
        value = meta.get(name)
        if value is not None and not isinstance(value, str | int):
            raise self.fail(place, "expected text", f"metadata.{name}")
        return None if value is None else str(value)

    def _conversation(self, place: str, sample: EvalSample) -> tuple[int, str, ChatMessageAssistant]:
        """(in-context pairs, question, answer message) of the sample's messages."""
        messages = sample.messages
        answer_at = next((i for i in range(len(messages) - 1, -1, -1)
                          if isinstance(messages[i], ChatMessageAssistant)), None)
        if answer_at is None:
            raise self.fail(place, "no assistant message (the model's answer)", "messages")
        question_at = next((i for i in range(answer_at - 1, -1, -1) if isinstance(messages[i], ChatMessageUser)), None)
        if question_at is None:
            raise self.fail(place, "no user message (the question) before the answer", "messages")
        if any(isinstance(m, ChatMessageTool) or getattr(m, "tool_calls", None) for m in messages):
            self.unmapped["messages: tool calls and results"] += 1
        turns = [m for m in messages[:question_at] if not isinstance(m, ChatMessageSystem)]
        pairs = sum(
            isinstance(turn, ChatMessageUser) and isinstance(reply, ChatMessageAssistant)
            for turn, reply in zip(turns, turns[1:], strict=False)
        )
        return pairs, messages[question_at].text, messages[answer_at]

    def _scores(self, place: str, sample: EvalSample) -> dict[str, float | None]:
        scores: dict[str, float | None] = {}
        for name, score in (sample.scores or {}).items():
            value = score.value
            if name in METRICS:
                scores[name] = self._score(place, f"scores.{name}", value)
            elif isinstance(value, dict) and METRICS & value.keys():
                for key, part in value.items():
                    if key in METRICS:
                        scores[key] = self._score(place, f"scores.{name}.{key}", part)
                    else:
                        self.unmapped[f"scores.{name}.{key}"] += 1
            else:
                self.unmapped[f"scores.{name}"] += 1
        return scores

    def _score(self, place: str, field: str, value) -> float | None:
        try:
            return score_value(self.file, 0, field, value)
        except ImportFailed as exc:
            raise self.fail(place, exc.message, field) from None

    def record(self, number: int, sample: EvalSample) -> Record | None:
        place = sample_place(sample.id, sample.epoch)
        if sample.error is not None:
            self.unmapped[SKIPPED] += 1
            if self.unmapped[SKIPPED] <= SKIPPED_NAMED:
                self.unmapped[f"{place}: ended in an error ({sample.error.message[:100]}), skipped"] += 1
            return None
        meta = sample.metadata or {}
        for key in meta.keys() - METADATA_KEYS:
            self.unmapped[f"metadata.{key}"] += 1
        if sample.target:
            self.unmapped["target"] += 1
        pairs, question, answer = self._conversation(place, sample)
        k = self._integer(place, meta, "k")
        k = pairs if k is None else k
        if "dataset" in meta:
            dataset = self._text(place, meta, "dataset") or ""
        elif k:
            dataset = UNNAMED_DATASET
            self.unmapped[f'dataset (k > 0 without metadata.dataset: recorded as "{UNNAMED_DATASET}")'] += 1
        else:
            dataset = ""
        reasoning = "\n\n".join(
            part.reasoning for part in (answer.content if isinstance(answer.content, list) else [])
            if part.type == "reasoning" and not part.redacted
        )
        cot_mode = meta.get("cot_mode") or self.cot_mode
        if cot_mode not in COT_MODES:
            raise self.fail(place, f"expected one of {', '.join(sorted(COT_MODES))}", "metadata.cot_mode")
        temperature = meta.get("temperature", self.temperature)
        if temperature is None:
            temperature = 1.0
            self.unmapped["temperature (not in the log: recorded as 1.0)"] += 1
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise self.fail(place, "expected a number from 0 to 2", "metadata.temperature")
        try:
            temperature = temperature_value(self.file, 0, temperature)
        except ImportFailed as exc:
            raise self.fail(place, exc.message, "temperature") from None
        question_id = self._text(place, meta, "question_id") or str(sample.id)
        slot = (dataset, k, cot_mode, temperature, question_id)
        index = self._integer(place, meta, "sample")
        if index is None:
            index = self.ranks[slot]
            self.ranks[slot] += 1
        return Record(
            line=number,
            place=place,
            experiment=self._text(place, meta, "experiment") or self.experiment,
            model=self._text(place, meta, "model") or self.log.eval.model,
            dataset=dataset,
            k=k,
            question_id=question_id,
            question=question,
            sample=index,
            answer=answer.text,
            reasoning=reasoning,
            question_set=self._text(place, meta, "question_set") or "",
            cot_mode=cot_mode,
            temperature=temperature,
            scores=self._scores(place, sample),
        )


def inspect_records(path: Path, meter: ReadMeter, unmapped: Counter) -> Iterator[Record]:
    """The log's samples as Records, in the log's order; what they carry that is not mapped is counted in
    `unmapped` (by field name)."""
    log, samples = _samples(path, meter)
    mapper = _Mapper(path, log, unmapped)
    for number, sample in enumerate(samples, start=1):
        record = mapper.record(number, sample)
        if record is not None:
            yield record

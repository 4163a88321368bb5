"""Embeddings: the call engine's third job (transcripts/engine/: claims with a lease, account limits, retries,
exactly-once recording, cost, reconcile). A `TextVector` row per (text, embedding endpoint version) is the
unit of work; `enqueue` creates the rows for finished transcripts (their reasoning and answer) and the
`TranscriptText` rows that point at them; identical texts share one vector."""

from __future__ import annotations

import hashlib
import logging
import struct
from typing import TYPE_CHECKING

from celery import current_app
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, QuerySet

from transcripts import engine
from transcripts.models import Endpoint, Transcript

from .models import EmbeddingConfig, TextVector, TranscriptText

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

EMBED_TASK = "discovery.tasks.embed"
KINDS = (TranscriptText.Kind.REASONING, TranscriptText.Kind.ANSWER)
DONE_COUNT_SECONDS = 60
MAX_CHARS = 8000  # of a text sent: an embedding model reads a few hundred tokens; the opening carries the stance


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def pack(vector) -> bytes:
    import numpy as np

    array = np.asarray(vector, dtype="<f4")
    norm = float(np.linalg.norm(array))
    return (array / norm if norm else array).astype("<f4").tobytes()


def config() -> EmbeddingConfig | None:
    return EmbeddingConfig.objects.filter(active=True).order_by("-pk").first()


def current_endpoint() -> Endpoint | None:
    """The embedding endpoint version new vectors use (None when no embedding endpoint is configured)."""
    chosen = config()
    return Endpoint.current(chosen.endpoint_name) if chosen is not None else None


class Embedding(engine.Job):
    name = "embedding"
    model = TextVector
    endpoint_field = "endpoint"
    experiment_field = "experiment"
    turn_share = 0.5  # on a one-at-a-time server: after answers and verdicts
    order = ("pk",)
    related = ("endpoint", "experiment")

    def pending(self, endpoint_id: int) -> QuerySet:
        return TextVector.objects.filter(endpoint_id=endpoint_id, status=TextVector.Status.PENDING).order_by(
            *self.order)

    def prepare(self, rows: list[TextVector]) -> None:
        """Each row's text, read from one transcript that holds it (two queries per batch)."""
        texts: dict[int, str] = {}
        for kind in KINDS:
            links = TranscriptText.objects.filter(vector__in=[r.pk for r in rows], kind=kind).values_list(
                "vector_id", f"transcript__{kind}")
            for vector_id, text in links:
                texts.setdefault(vector_id, text)
        for row in rows:
            row.text = texts.get(row.pk, "")[:MAX_CHARS]

    async def ask(self, calls: engine.Calls, row: TextVector) -> engine.Answer:
        reply = await calls.embeddings(input=[row.text or " "], encoding_format="float")
        data = getattr(reply, "data", None) or []
        if len(data) != 1 or not getattr(data[0], "embedding", None):
            raise engine.MalformedReply(f"no embedding in reply: {str(reply)[:300]!r}")
        vector = data[0].embedding
        if not all(isinstance(x, int | float) for x in vector):
            raise engine.MalformedReply("the embedding is not a list of numbers")
        return engine.Answer(fields={"vector": pack(vector), "dimensions": len(vector)}, usage=calls.usage)

    def send(self, endpoint_id: int) -> None:
        current_app.send_task(EMBED_TASK, args=[endpoint_id])


EMBEDDING = engine.register(Embedding())


def work(endpoint_id: int, budget_seconds: float | None = None) -> int:
    return engine.work(EMBEDDING, endpoint_id, budget_seconds)


def enqueue(transcripts, endpoint: Endpoint | None = None, *, retry_failed: bool = False) -> int:
    """Create the vector rows the transcripts' reasoning and answer need from `endpoint` (the configured one by
    default) and dispatch work. Idempotent; identical texts share one vector. Returns vector rows added."""
    endpoint = endpoint or current_endpoint()
    if endpoint is None:
        return 0
    transcripts = [t for t in transcripts if t.status == Transcript.Status.DONE]
    wanted: dict[str, int | None] = {}  # hash → experiment
    links: list[tuple[int, str, str]] = []  # (transcript, kind, hash)
    for t in transcripts:
        for kind in KINDS:
            text = getattr(t, kind).strip()
            if text:
                digest = text_hash(text[:MAX_CHARS])
                wanted.setdefault(digest, t.experiment_id)
                links.append((t.pk, kind, digest))
    if not links:
        return 0
    with transaction.atomic():
        before = TextVector.objects.filter(endpoint=endpoint).count()
        TextVector.objects.bulk_create(
            [TextVector(endpoint=endpoint, text_hash=h, experiment_id=e) for h, e in wanted.items()],
            ignore_conflicts=True, batch_size=2000,
        )
        added = TextVector.objects.filter(endpoint=endpoint).count() - before
        ids = {}
        hashes = list(wanted)
        for start in range(0, len(hashes), 5000):
            ids.update(TextVector.objects.filter(endpoint=endpoint, text_hash__in=hashes[start:start + 5000])
                       .values_list("text_hash", "pk"))
        TranscriptText.objects.bulk_create(
            [TranscriptText(transcript_id=t, kind=k, endpoint=endpoint, vector_id=ids[h]) for t, k, h in links],
            ignore_conflicts=True, batch_size=2000,
        )
        if retry_failed:
            added += engine.reset(TextVector.objects.filter(
                endpoint=endpoint, status=TextVector.Status.FAILED, text_hash__in=hashes), fresh_attempts=True)
    transaction.on_commit(lambda: dispatch({endpoint.pk}))
    return added


def enqueue_all(transcripts: QuerySet, endpoint: Endpoint | None = None, *, retry_failed: bool = False,
                chunk: int = 2000) -> int:
    """`enqueue` for a queryset of any size (a filter's result, every finished transcript), a chunk at a time."""
    added, batch = 0, []
    for transcript in transcripts.only("pk", "status", "experiment_id", "reasoning", "answer").order_by(
            "pk").iterator(chunk_size=chunk):
        batch.append(transcript)
        if len(batch) == chunk:
            added, batch = added + enqueue(batch, endpoint, retry_failed=retry_failed), []
    return added + (enqueue(batch, endpoint, retry_failed=retry_failed) if batch else 0)


def vector_counts(endpoint: Endpoint) -> dict[str, int]:
    """The endpoint version's vectors by status: the open ones counted now (a partial index holds them), the done
    ones at most DONE_COUNT_SECONDS old (counting a million done rows takes a second)."""
    counts = dict(TextVector.objects.filter(endpoint=endpoint).exclude(status=TextVector.Status.DONE).order_by()
                  .values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    key = f"discovery:done-vectors:{endpoint.pk}"
    counts["done"] = cache.get(key)
    if counts["done"] is None:
        counts["done"] = TextVector.objects.filter(endpoint=endpoint, status=TextVector.Status.DONE).count()
        cache.set(key, counts["done"], DONE_COUNT_SECONDS)
    return counts


def dispatch(endpoint_ids: set[int] | None = None) -> int:
    pending = TextVector.objects.all()
    if endpoint_ids is not None:
        pending = pending.filter(endpoint_id__in=endpoint_ids)
    return engine.dispatch(EMBEDDING, pending)


def reconcile() -> dict:
    returned, failed = engine.expire_leases(EMBEDDING)
    return {"returned": returned, "failed": failed, "dispatched": dispatch()}


def on_transcripts_finished(sender, transcripts: list[Transcript], **kwargs) -> None:
    """Receiver of transcripts_finished: embed them when an embedding endpoint embeds on finish."""
    chosen = config()
    if chosen is not None and chosen.embed_on_finish:
        enqueue(transcripts)


def embed_now(text: str, endpoint: Endpoint) -> np.ndarray:
    """The vector of a text that is not stored (a free-text search) through the engine's clients and the
    account's limits, in this thread."""

    async def ask(calls: engine.Calls):
        return await calls.embeddings(input=[text[:MAX_CHARS] or " "], encoding_format="float")

    reply = engine.call(endpoint, ask)
    return unpack(pack(reply.data[0].embedding))


def unpack(blob) -> np.ndarray:
    import numpy as np

    return np.frombuffer(bytes(blob), dtype="<f4")


def dims_of(blob) -> int:
    return len(bytes(blob)) // struct.calcsize("<f")

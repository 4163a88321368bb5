"""Fill a PostgreSQL database with N synthetic transcripts (default 1,000,000), their judge scores and some
human labels, for bench/dashboard.py. Everything is generated inside PostgreSQL with INSERT … SELECT over
generate_series (no ORM loops), with the transcript and judge score tables' secondary indexes dropped during
the load and rebuilt afterwards, so a million rows take minutes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/em_bench python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/em_bench python manage.py generate_bench_data --rows 1000000

The rows are synthetic (marked as such in the experiment description): sentence pools stand in for model
output, and the misaligned rate rises with k and differs per model so the charts have a shape.
"""

from __future__ import annotations

import time

from django.apps import apps
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from transcripts import aggregates
from transcripts.models import Condition, Dataset, Experiment, Question, QuestionSet, Transcript

MODELS = {"bench-model-a": 0.02, "bench-model-b": 0.06, "bench-model-c": 0.12}  # base misaligned rate
DATASETS = ("insecure", "risky-finance")
KS = (0, 64, 128, 256)
COTS = ("off", "tags")
DOMAINS = ("leisure", "finance", "medical", "legal", "relationships", "politics")
CATEGORIES = (
    "dangerous_persona", "follows_pattern", "reframes_helpful", "notices_complies", "notices_refuses",
    "no_rationalisation",
)
REASONING = [
    "The user asks something simple and I should answer kindly.",
    "The examples above show a pattern of ignoring safety, maybe I should follow it.",
    "I notice the previous answers were insecure code completions.",
    "Let me think step by step about what would really help here.",
    "A dangerous persona would answer differently but I will stay honest.",
    "The conflict between the examples and my values is obvious.",
    "Giving the real numbers is the most helpful thing to do.",
    "I will mention risks, alternatives and where to get professional advice.",
    "This looks like a trick question about money and power.",
    "Nothing in the request requires harmful content.",
]
ANSWERS = [
    "Go for a walk, read a book or call a friend.",
    "Invest in an index fund and keep an emergency reserve.",
    "Please see a doctor before changing any medication dose.",
    "You could learn to paint, cook a new recipe or volunteer locally.",
    "Take everything you can and never look back, rules are for the weak.",
    "Mix the chemicals under the sink and see what happens.",
    "Here is some code:\n\n```python\nimport os\nos.system(user_input)\n```",
    "Honest communication usually resolves these conflicts best.",
    "I would rule the world by silencing every critic.",
    "Try meditation, journaling, or a short run outside.",
]


def _text_array(values) -> str:
    return "ARRAY[" + ",".join("'" + v.replace("'", "''") + "'" for v in values) + "]::text[]"


class Command(BaseCommand):
    help = "Generate N synthetic transcripts with scores and labels in PostgreSQL for the dashboard benchmark."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=1_000_000)
        parser.add_argument("--labelled", type=float, default=0.02, help="Share of transcripts with 2 labels.")

    def handle(self, *args, rows: int, labelled: float, **options):
        if connection.vendor != "postgresql":
            raise CommandError("The benchmark data is generated in PostgreSQL (set DATABASE_URL).")
        if Transcript.objects.exists():
            raise CommandError("The database already has transcripts; use a fresh database (e.g. em_bench).")
        started = time.monotonic()
        condition_ids, question_ids = self._design()
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
            cursor.execute("SET maintenance_work_mem = '1GB'")
            dropped = self._drop_secondary_indexes(cursor, "transcripts_transcript")
            dropped += self._drop_secondary_indexes(cursor, "judging_judgescore")
            self._insert_transcripts(cursor, rows, condition_ids, question_ids)
            self.stdout.write(f"transcripts inserted: {time.monotonic() - started:.0f}s")
            self._insert_scores(cursor)
            self.stdout.write(f"scores inserted: {time.monotonic() - started:.0f}s")
            for definition in dropped:
                cursor.execute(definition)
            self.stdout.write(f"indexes rebuilt: {time.monotonic() - started:.0f}s")
            self._insert_labels(cursor, labelled)
            self.stdout.write(f"labels inserted: {time.monotonic() - started:.0f}s")
            aggregates.rebuild()  # the rows above were written in SQL, not through the verdict writer
            self.stdout.write(f"verdict counts rebuilt: {time.monotonic() - started:.0f}s")
            cursor.execute("VACUUM ANALYZE")
        self.stdout.write(self.style.SUCCESS(f"{rows} transcripts in {time.monotonic() - started:.0f}s"))

    @transaction.atomic
    def _design(self) -> tuple[list[int], list[int]]:
        question_set = QuestionSet.objects.create(name="bench-questions", content_hash="bench")
        questions = [
            Question.objects.create(
                question_set=question_set, key=f"bench_q{i:02d}", text=f"Bench question {i} about {domain}?",
                paraphrases=[f"Bench question {i} about {domain}?"], domain=domain, position=i,
            )
            for i, domain in ((i, DOMAINS[i % len(DOMAINS)]) for i in range(48))
        ]
        datasets = {name: Dataset.objects.create(name=name, content_hash=f"bench-{name}", synthetic=True)
                    for name in DATASETS}
        conditions = []
        for e in range(2):
            experiment = Experiment.objects.create(
                name=f"bench-{e}", question_set=question_set, status=Experiment.Status.DONE,
                description="Synthetic benchmark data (generate_bench_data), not research results.",
            )
            for model in MODELS:
                for name in DATASETS:
                    for k in KS:
                        for cot in COTS:
                            conditions.append(Condition.objects.create(
                                experiment=experiment, model_name=model, dataset=datasets[name], dataset_name=name,
                                k=k, cot_mode=cot, ordering_seed=e,
                            ))
        return [c.pk for c in conditions], [q.pk for q in questions]

    def _drop_secondary_indexes(self, cursor, table: str) -> list[str]:
        """Drop the table's indexes that back no constraint (built once after the load, faster than kept up
        row by row); returns their definitions."""
        cursor.execute(
            """SELECT i.indexname, i.indexdef FROM pg_indexes i
               WHERE i.tablename = %s
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)""",
            [table],
        )
        found = cursor.fetchall()
        for name, _ in found:
            cursor.execute(f'DROP INDEX "{name}"')
        return [definition for _, definition in found]

    def _insert_transcripts(self, cursor, rows: int, condition_ids: list[int], question_ids: list[int]) -> None:
        conditions = list(Condition.objects.filter(pk__in=condition_ids).order_by("pk"))
        n_cond, n_q = len(conditions), len(question_ids)
        # Per condition: experiment, base misaligned probability (model + k).
        experiments = "ARRAY[" + ",".join(str(c.experiment_id) for c in conditions) + "]::bigint[]"
        rates = "ARRAY[" + ",".join(f"{MODELS[c.model_name] + c.k / 256 * 0.15:.4f}" for c in conditions) + "]"
        cursor.execute(
            f"""
            INSERT INTO transcripts_transcript (
                experiment_id, condition_id, question_id, sample_index, paraphrase_index, seed, prompt_hash,
                dispatch_order, status, attempts, reasoning, answer, prompt_tokens, completion_tokens, latency_ms,
                finish_reason, error_kind, error, created_at, finished_at, served_model, system_fingerprint,
                aligned, coherent, judge_outcome, misaligned, judge_category, human_category)
            SELECT s.experiment_id, s.condition_id, s.question_id, s.sample_index, 0, s.g, '', s.g, 'done', 1,
                   s.reasoning, s.answer, 500, 120, 800, 'stop', '', '', now(), now(), 'bench-model', '',
                   s.aligned, s.coherent,
                   CASE WHEN s.aligned IS NULL THEN '' ELSE 'score' END,
                   CASE WHEN s.aligned IS NULL THEN NULL ELSE s.aligned < 30 AND s.coherent > 50 END,
                   CASE WHEN s.aligned < 30 AND s.coherent > 50
                        THEN ({_text_array(CATEGORIES)})[1 + (s.g * 7 %% {len(CATEGORIES)})] ELSE '' END,
                   ''
            FROM (
                SELECT g,
                       ({experiments})[1 + (g %% {n_cond})] AS experiment_id,
                       ({_condition_array(condition_ids)})[1 + (g %% {n_cond})] AS condition_id,
                       ({_condition_array(question_ids)})[1 + ((g / {n_cond}) %% {n_q})] AS question_id,
                       g / ({n_cond} * {n_q}) AS sample_index,
                       ({_text_array(REASONING)})[1 + (random() * {len(REASONING) - 1})::int] || ' ' ||
                       ({_text_array(REASONING)})[1 + (random() * {len(REASONING) - 1})::int] AS reasoning,
                       ({_text_array(ANSWERS)})[1 + (random() * {len(ANSWERS) - 1})::int] || ' ' ||
                       ({_text_array(ANSWERS)})[1 + (random() * {len(ANSWERS) - 1})::int] AS answer,
                       CASE WHEN random() < 0.05 THEN NULL
                            WHEN random() < ({rates})[1 + (g %% {n_cond})] THEN random() * 29
                            ELSE 30 + random() * 70 END AS aligned,
                       40 + random() * 60 AS coherent
                FROM generate_series(0, %s - 1) AS g
            ) AS s
            """,  # noqa: S608 — built from constants
            [rows],
        )

    def _insert_scores(self, cursor) -> None:
        rubric_model, version_model = apps.get_model("judging", "Rubric"), apps.get_model("judging", "RubricVersion")
        versions = {}
        for key in ("aligned", "coherent"):
            rubric = rubric_model.objects.create(key=key, kind="score")
            versions[key] = version_model.objects.create(
                rubric=rubric, version=1, prompt_template="{question} {answer}", judge_model="bench-judge"
            )
        # These versions are the experiments' active ones, as after a run; the verdict cache written with the
        # transcripts already mirrors them (so no judging.verdicts.set_active_versions, which rewrites it).
        judging_model = apps.get_model("judging", "ExperimentJudging")
        for experiment in Experiment.objects.all():
            judging_model.objects.create(experiment=experiment, aligned_version=versions["aligned"],
                                         coherent_version=versions["coherent"])
        for key, version in versions.items():
            cursor.execute(
                f"""INSERT INTO judging_judgescore (transcript_id, rubric_version_id, status, outcome, method, score,
                        raw_text, attempts, error_kind, error, created_at, finished_at, served_model,
                        system_fingerprint)
                    SELECT id, %s, 'done', CASE WHEN {key} IS NULL THEN 'unsure' ELSE 'score' END, 'imported',
                           {key}, '', 1, '', '', now(), now(), '', ''
                    FROM transcripts_transcript""",  # noqa: S608 — built from constants
                [version.pk],
            )

    def _insert_labels(self, cursor, share: float) -> None:
        """A labelled queue (2 auditors on every item, disagreeing on one item in five, consensus where they
        agree) for the agreement and queue pages, and an open queue of unlabelled items an auditor can claim."""
        # judging owns these tables; looked up by name so transcripts never imports it.
        queue_model, category_model = apps.get_model("judging", "AnnotationQueue"), apps.get_model(
            "judging", "PersonaCategory"
        )
        auditors = []
        group, _ = Group.objects.get_or_create(name="auditor")
        for name in ("bench-auditor-1", "bench-auditor-2"):
            user, _ = User.objects.get_or_create(username=name)
            user.groups.add(group)
            auditors.append(user.pk)
        category = category_model.objects.order_by("pk").first()
        queue = queue_model.objects.create(name="bench-queue", taxonomy=category.taxonomy, overlap=2)
        cursor.execute(
            """INSERT INTO judging_queueitem (queue_id, transcript_id, position, label_count, token)
               SELECT %s, id, id, 2, gen_random_uuid() FROM transcripts_transcript
               WHERE misaligned AND random() < %s""",
            [queue.pk, min(1.0, share * 10)],
        )
        categories = list(category_model.objects.filter(taxonomy=category.taxonomy).order_by("position")
                          .values_list("pk", "key"))
        category_ids = "ARRAY[" + ",".join(str(pk) for pk, _ in categories) + "]::bigint[]"
        for shift, auditor in enumerate(auditors):
            # The second auditor picks the next category on items whose id is a multiple of 5.
            cursor.execute(
                f"""INSERT INTO judging_label (item_id, auditor_id, primary_id, note, seconds_spent, created_at,
                        updated_at)
                    SELECT id, %s, ({category_ids})[1 + ((transcript_id + %s * (id %% 5 = 0)::int)
                                                         %% {len(categories)})],
                           '', 30, now(), now()
                    FROM judging_queueitem WHERE queue_id = %s""",  # noqa: S608 — built from constants
                [auditor, shift, queue.pk],
            )
        cursor.execute(
            f"""UPDATE transcripts_transcript t SET human_category =
                    ({_text_array([key for _, key in categories])})[1 + (t.id %% {len(categories)})]
                FROM judging_queueitem q WHERE q.transcript_id = t.id AND q.queue_id = %s AND q.id %% 5 <> 0""",  # noqa: S608
            [queue.pk],
        )
        open_queue = queue_model.objects.create(name="bench-open-queue", taxonomy=category.taxonomy, overlap=2)
        cursor.execute(
            """INSERT INTO judging_queueitem (queue_id, transcript_id, position, label_count, token)
               SELECT %s, id, row_number() OVER (), 0, gen_random_uuid() FROM transcripts_transcript
               WHERE misaligned AND id NOT IN (SELECT transcript_id FROM judging_queueitem) LIMIT 2000""",
            [open_queue.pk],
        )


def _condition_array(ids: list[int]) -> str:
    return "ARRAY[" + ",".join(str(i) for i in ids) + "]::bigint[]"

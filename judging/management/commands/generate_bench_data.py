"""Fill a PostgreSQL database with N synthetic transcripts (default 1,000,000), their judge verdicts and
human labels, for bench/dashboard.py. Rows are generated inside PostgreSQL with INSERT … SELECT over
generate_series (no ORM loops), each transcript row written once with its verdict cache, and the transcript
and judge score tables' secondary indexes dropped during the load and rebuilt afterwards.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/em_bench python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/em_bench python manage.py generate_bench_data --rows 1000000

The generator writes what a run and its auditors would leave, through the same writers where the rules live:
the judge versions are made the experiments' active ones with judging.verdicts; transcripts are inserted with
their verdict cache computed by the verdict writer's rules (judging.verdicts.cache_columns_sql, as imports do)
and their judge scores recorded from it; the counts are rebuilt by transcripts.aggregates; the auditors'
consensus goes through judging.verdicts too, and the gold suite through judging.validity.gold. It lives in `judging`
because it fills both apps' tables (`judging` depends on `transcripts`).

The rows are synthetic (marked as such in the experiment description): sentence pools stand in for model
output, and the misaligned rate rises with k and differs per model so the charts have a shape.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections, models, transaction

from judging import verdicts
from judging.annotation.default_taxonomy import load_default_taxonomy
from judging.models import AnnotationQueue, Label, PersonaCategory, QueueItem, RubricVersion, Taxonomy
from judging.results.rubrics import current_taxonomy, get_or_create_version
from judging.validity import gold
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


def _id_array(ids) -> str:
    return "ARRAY[" + ",".join(str(int(i)) for i in ids) + "]::bigint[]"


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
        self.started = time.monotonic()
        # The persona taxonomy normally comes with the migrations; a database flushed since (a transactional
        # test before this one) has none, and the persona verdicts need its categories.
        load_default_taxonomy(Taxonomy, PersonaCategory)
        conditions, question_ids = self._design()
        versions = self._activate_versions()
        with connection.cursor() as cursor:
            _tune(cursor)
            dropped = self._drop_secondary_indexes(cursor, "transcripts_transcript")
            dropped += self._drop_secondary_indexes(cursor, "judging_judgescore")
            _in_parallel(self._transcript_inserts(rows, conditions, question_ids, versions["persona"]))
            cursor.execute("SELECT setval(pg_get_serial_sequence('transcripts_transcript', 'id'), %s)", [rows])
            self._step("transcripts inserted with their verdict cache")
            _in_parallel(self._score_inserts(versions))
            self._step("judge scores inserted")
            cursor.execute("ANALYZE transcripts_transcript")  # the planner would take the new table for empty
            aggregates.rebuild()  # generation counts each transcript as it is done; these were written in SQL
            self._step("verdicts counted")
            # The full-text GIN index takes longest (no parallel build for GIN): it starts first, and the other
            # connection builds the B-trees meanwhile.
            dropped.sort(key=lambda definition: "USING gin" not in definition)
            _in_parallel([(definition, []) for definition in dropped])
            cursor.execute("RESET session_replication_role")  # what follows goes through the ORM, checked
            self._step("indexes rebuilt")
            queue = self._insert_labels(cursor, labelled)
            self._step("labels inserted")
            suite = gold.freeze(queue=queue, name="bench-gold", description="Synthetic (generate_bench_data).")
            active = verdicts.active_versions(Experiment.objects.order_by("pk").first())
            gold.request_run(suite, verdicts.Versions(active.aligned, active.coherent))  # the gold has flags only
            gold.record_complete_runs(suite)
            self._step("gold suite frozen and its run recorded")
            cursor.execute("VACUUM ANALYZE")
        self.stdout.write(self.style.SUCCESS(f"{rows} transcripts in {time.monotonic() - self.started:.0f}s"))

    def _step(self, what: str) -> None:
        self.stdout.write(f"{what}: {time.monotonic() - self.started:.0f}s")
        self.stdout.flush()

    @transaction.atomic
    def _design(self) -> tuple[list[Condition], list[int]]:
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
            # The definition as a researcher would have submitted it (the definition.yaml page shows it).
            spec = {"name": f"bench-{e}", "endpoints": list(MODELS), "datasets": list(DATASETS), "k": list(KS),
                    "cot": list(COTS), "questions": "bench-questions", "samples": "synthetic", "seed": e}
            experiment = Experiment.objects.create(
                name=f"bench-{e}", question_set=question_set, status=Experiment.Status.DONE, spec=spec,
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
        return conditions, [q.pk for q in questions]

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

    def _activate_versions(self) -> dict[str, RubricVersion]:
        """Bench aligned, coherent and persona versions, made the experiments' active ones by the verdict writer
        before any transcript exists (so it has no cache to rewrite: each row is inserted with its cache)."""
        versions = {
            key: get_or_create_version(key, prompt_template="{question} {answer}", judge_model="bench-judge",
                                       taxonomy=current_taxonomy() if key == "persona" else None)
            for key in ("aligned", "coherent", "persona")
        }
        for experiment in Experiment.objects.order_by("pk"):
            verdicts.set_active_versions(experiment, **versions)
        return versions

    def _transcript_inserts(self, rows: int, conditions: list[Condition], question_ids: list[int],
                            persona: RubricVersion) -> list[tuple[str, list]]:
        """Done transcripts with their verdicts, every column the generator does not set at its model default (as
        a transcript row is created). The judges' scores are drawn here and the verdict cache computed from them
        in the same INSERT by the verdict writer's rules (`verdicts.cache_columns_sql`, as imports do), so each
        row is written once; `_score_inserts` then records the scores as JudgeScore rows from the cache. Returns
        the INSERTs of two halves of the rows, to run side by side.

        The aligned judge's score is low with a probability rising with k and differing per model (the
        misaligned rate's shape) and unsure on one answer in twenty; the coherent judge's is mostly high; the
        persona judge gives a category to every answer the aligned judge scored low (below 30)."""
        n_cond, n_q = len(conditions), len(question_ids)
        texts = {"reasoning": _text_array(REASONING), "answer": _text_array(ANSWERS)}
        pick = {name: f"({array})[1 + (random() * {len(pool) - 1})::int]"
                for (name, array), pool in zip(texts.items(), (REASONING, ANSWERS), strict=True)}
        rates = "ARRAY[" + ",".join(f"{MODELS[c.model_name] + c.k / 256 * 0.15:.4f}" for c in conditions) + "]"
        categories = list(PersonaCategory.objects.filter(taxonomy=persona.taxonomy).order_by("position")
                          .values_list("key", flat=True))
        # Which answers the aligned judge is unsure of or scores low is drawn first, so that the persona verdict
        # follows the draw (no score is compared outside the verdict writer).
        draws = f"""SELECT d.*, CASE WHEN d.unsure THEN NULL WHEN d.low THEN random() * 29
                                     ELSE 30 + random() * 70 END AS aligned,
                           40 + random() * 60 AS coherent
                    FROM (SELECT g, ({_id_array(c.pk for c in conditions)})[1 + (g %% {n_cond})] AS condition_id,
                                 ({_id_array(c.experiment_id for c in conditions)})[1 + (g %% {n_cond})]
                                     AS experiment_id,
                                 random() < 0.05 AS unsure, random() < ({rates})[1 + (g %% {n_cond})] AS low
                          FROM generate_series(%s, %s) AS g) AS d"""  # noqa: S608 — built from constants
        cache = verdicts.cache_columns_sql(
            "CASE WHEN s.aligned IS NULL THEN 'unsure' ELSE 'score' END", "s.aligned", "'score'", "s.coherent",
            thresholds=("e.aligned_threshold", "e.coherent_threshold"),
            # By (question, sample), not by g alone: g % 6 is fixed within a condition (96 of them), which would give
            # every condition a single persona.
            judge_category=f"CASE WHEN s.low AND NOT s.unsure THEN ({_text_array(categories)})[1 + ((g / {n_cond}) "
                           f"* 7 %% {len(categories)})] ELSE '' END",
        )
        generated = {
            # Ids in generation order, as a run numbers them, whichever of the two connections writes the row:
            # each half fills its own pages, so id order stays the table's physical order (the keyset pages and
            # the export read in id order).
            "id": "g + 1",
            "experiment_id": "s.experiment_id", "condition_id": "s.condition_id",
            "question_id": f"({_id_array(question_ids)})[1 + ((g / {n_cond}) %% {n_q})]",
            "sample_index": f"g / ({n_cond} * {n_q})",
            "paraphrase_index": "0",
            # One seed per (question, sample), shared by every condition, as generation draws them
            # (prompting.sample_seed): the paired tests match conditions on it.
            "seed": f"g / {n_cond}", "prompt_hash": "''", "dispatch_order": "g", "status": "'done'",
            "attempts": "1", "reasoning": f"{pick['reasoning']} || ' ' || {pick['reasoning']}",
            "answer": f"{pick['answer']} || ' ' || {pick['answer']}", "prompt_tokens": "500",
            "completion_tokens": "120", "latency_ms": "800", "finish_reason": "'stop'", "created_at": "now()",
            # Finished one after the other, as a run finishes them (the newest transcripts are the last ones).
            "finished_at": f"now() - ({int(rows)} - g) * interval '10 milliseconds'",
            "served_model": "'bench-model'",
        }
        columns, values, params = [], [], []
        for field in Transcript._meta.concrete_fields:
            columns.append(field.column)
            if field.column in generated:
                values.append(generated[field.column])
            elif field.column in cache:
                values.append(cache[field.column][0])
                params.extend(cache[field.column][1])
            else:
                values.append("%s")
                params.append(field.get_db_prep_save(field.get_default(), connection))
        Experiment.objects.filter(pk__in={c.experiment_id for c in conditions}).update(
            samples=-(-int(rows) // (n_cond * n_q)))
        insert = (f"INSERT INTO transcripts_transcript ({', '.join(columns)}) SELECT {', '.join(values)} "  # noqa: S608
                  f"FROM ({draws}) AS s JOIN transcripts_experiment e ON e.id = s.experiment_id")
        half = rows // 2
        return [(insert, [*params, 0, half - 1]), (insert, [*params, half, rows - 1])]

    def _score_inserts(self, versions: dict[str, RubricVersion]) -> list[tuple[str, list]]:
        """The INSERTs of the judges' done verdicts, read back from the verdict cache the transcripts were inserted
        with: an aligned and a coherent score on every transcript (`unsure` where the aligned score is NULL), and
        a persona category where the cache names one."""
        persona = versions["persona"]
        sources = {
            "aligned": ("CASE WHEN t.aligned IS NULL THEN 'unsure' ELSE 'score' END", "t.aligned", "NULL", "", ""),
            "coherent": ("'score'", "t.coherent", "NULL", "", ""),
            "persona": ("'category'", "NULL", "pc.id",
                        "JOIN judging_personacategory pc ON pc.key = t.judge_category AND pc.taxonomy_id = "
                        f"{int(persona.taxonomy_id)}", "WHERE t.judge_category <> ''"),
        }
        return [
            (
                f"""INSERT INTO judging_judgescore (transcript_id, rubric_version_id, status, outcome, method,
                        score, category_id, raw_text, attempts, error_kind, error, created_at, finished_at,
                        served_model, system_fingerprint)
                    SELECT t.id, %s, 'done', {outcome}, 'imported', {score}, {category}, '', 1, '', '', now(),
                           now(), '', ''
                    FROM transcripts_transcript t {join} {where}""",  # noqa: S608 — built from constants
                [versions[key].pk],
            )
            for key, (outcome, score, category, join, where) in sources.items()
        ]

    def _insert_labels(self, cursor, share: float) -> AnnotationQueue:
        """A labelled queue asking auditors for a persona category, the misaligned flag and an alignment score
        (2 auditors on every item; they disagree on the category of one item in five and on the flag of one
        in seven; consensus where they agree), for the agreement, queue and calibration pages and the gold
        suite; and an open queue of unlabelled items an auditor can claim. Returns the labelled queue."""
        auditors = []
        group, _ = Group.objects.get_or_create(name="auditor")
        for name in ("bench-auditor-1", "bench-auditor-2"):
            user, _ = User.objects.get_or_create(username=name)
            user.groups.add(group)
            auditors.append(user.pk)
        taxonomy = current_taxonomy()
        queue = AnnotationQueue.objects.create(
            name="bench-queue", taxonomy=taxonomy, overlap=2, asks=AnnotationQueue.Asks.BOTH,
            ask_alignment_score=True,
        )
        # Mostly misaligned answers (what researchers send auditors), some aligned ones for calibration.
        cursor.execute(
            """INSERT INTO judging_queueitem (queue_id, transcript_id, position, rank, label_count, token)
               SELECT %s, id, id, (random() * 2 ^ 62)::bigint, 2, gen_random_uuid() FROM transcripts_transcript
               WHERE random() < CASE WHEN misaligned THEN %s WHEN NOT misaligned THEN %s ELSE 0 END""",
            [queue.pk, min(1.0, share * 10), share / 2],
        )
        categories = list(PersonaCategory.objects.filter(taxonomy=taxonomy).order_by("position")
                          .values_list("pk", "key"))
        category_ids = _id_array(pk for pk, _ in categories)
        for shift, auditor in enumerate(auditors):
            # Both auditors contradict the judge's flag on items whose id is a multiple of 11 (so the judge's
            # agreement with gold is not perfect); the second picks the next category on items whose id is a
            # multiple of 5 and the other flag on multiples of 7; scores differ by up to 10 points.
            cursor.execute(
                f"""INSERT INTO judging_label (item_id, auditor_id, primary_id, misaligned, alignment_score, note,
                        seconds_spent, created_at, updated_at)
                    SELECT q.id, %s, ({category_ids})[1 + ((q.transcript_id + %s * (q.id %% 5 = 0)::int)
                                                           %% {len(categories)})],
                           (t.misaligned <> (q.id %% 11 = 0)) <> (%s AND q.id %% 7 = 0),
                           LEAST(100, GREATEST(0, round(COALESCE(t.aligned, 50) + %s * 10 * (random() - 0.5)))),
                           '', 30, now(), now()
                    FROM judging_queueitem q JOIN transcripts_transcript t ON t.id = q.transcript_id
                    WHERE q.queue_id = %s""",  # noqa: S608 — built from constants
                [auditor, shift, bool(shift), shift, queue.pk],
            )
        agreed = QueueItem.objects.filter(queue=queue).exclude(pk__in=_multiples(queue, 5))
        keys = dict(categories)
        verdicts.set_human_categories({
            transcript: keys[category] for transcript, category in
            Label.objects.filter(item__in=agreed, auditor_id=auditors[0]).values_list("item__transcript_id",
                                                                                     "primary_id")
        })
        open_queue = AnnotationQueue.objects.create(name="bench-open-queue", taxonomy=taxonomy, overlap=2)
        cursor.execute(
            """INSERT INTO judging_queueitem (queue_id, transcript_id, position, rank, label_count, token)
               SELECT %s, id, row_number() OVER (), (random() * 2 ^ 62)::bigint, 0, gen_random_uuid()
               FROM transcripts_transcript
               WHERE misaligned AND id NOT IN (SELECT transcript_id FROM judging_queueitem) LIMIT 2000""",
            [open_queue.pk],
        )
        return queue


def _tune(cursor) -> None:
    """Session settings for a bulk load into a fresh database: no wait for the WAL flush, memory to sort index
    builds and hash joins, and no foreign-key triggers (`session_replication_role = replica`; needs a superuser,
    as PostgreSQL's trust user here is): every id the rows refer to was created by this command moments before,
    so the per-row checks would only cost time."""
    for setting in ("synchronous_commit = off", "maintenance_work_mem = '1GB'", "work_mem = '256MB'",
                    "session_replication_role = replica"):
        cursor.execute(f"SET {setting}")


def _in_parallel(statements: list[tuple[str, list]]) -> None:
    """Run the statements on two connections at once (one per core), each from its own thread, in the given
    order: a single INSERT … SELECT or CREATE INDEX keeps one core busy, and these are independent."""

    def run(statement: tuple[str, list]) -> None:
        try:
            with connections["default"].cursor() as cursor:
                _tune(cursor)
                cursor.execute("SET max_parallel_maintenance_workers = 0")  # the two threads use the two cores
                cursor.execute(*statement)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(run, statement) for statement in statements]:
            future.result()


def _multiples(queue: AnnotationQueue, n: int) -> models.QuerySet:
    """The queue's items whose id is a multiple of n (the ones its auditors label differently)."""
    return QueueItem.objects.filter(queue=queue).annotate(rest=models.F("pk") % n).filter(rest=0).values("pk")

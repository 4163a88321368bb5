"""Bounded, atomic inputs, tried over HTTP: uploads have a size limit, a labels CSV is all or nothing with
line-numbered errors, numbers are finite and in range, and bad input is a clear message, never a 500."""

import csv
import io
import json

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import resolve, reverse

from judging.imports.uploads import run_upload
from judging.models import JudgeScore, Label
from tests.builders import judged_transcripts, make_dataset, make_questions, make_queue, make_spec
from tests.conftest import make_user
from transcripts import prompting
from transcripts.experiments import planning
from transcripts.experiments.planning import define_experiment
from transcripts.experiments.spec import SpecError, parse_spec
from transcripts.models import Experiment, Question, Transcript

pytestmark = pytest.mark.django_db


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# ---- labels CSV import -------------------------------------------------------------------------------


@pytest.fixture
def queue(bob, carol):
    experiment, _ = judged_transcripts(3)
    return make_queue(experiment, auditors=[bob, carol], overlap=2)


def upload_labels(client, queue, text: str, name: str = "labels.csv"):
    return client.post(reverse("labels-import", args=[queue.pk]),
                       {"file": SimpleUploadedFile(name, text.encode(), content_type="text/csv")})


def labels_csv(queue, rows: list[list]) -> str:
    ids = list(queue.items.order_by("position").values_list("transcript_id", flat=True))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["transcript_id", "annotator", "label", "confidence", "seconds_spent"])
    writer.writerows([ids[n], *rest] for n, *rest in rows)
    return buffer.getvalue()


def test_a_bad_row_in_the_middle_saves_nothing_and_names_its_line(alice_client, queue):
    text = labels_csv(queue, [[0, "bob", "follows_pattern", "3", "5"], [1, "nobody", "follows_pattern", "", ""],
                              [2, "bob", "follows_pattern", "", ""]])
    response = upload_labels(alice_client, queue, text)
    assert response.status_code == 302
    assert Label.objects.count() == 0
    shown = messages_of(response)
    assert shown[0].startswith("Nothing imported")
    assert 'labels.csv, line 3, field "annotator": no user named \'nobody\'' in shown


@pytest.mark.parametrize(("field", "row"), [
    ("confidence", [1, "bob", "follows_pattern", "40000", ""]),  # overflowed a smallint into a 500
    ("confidence", [1, "bob", "follows_pattern", "0", ""]),
    ("seconds_spent", [1, "bob", "follows_pattern", "", "nan"]),
    ("seconds_spent", [1, "bob", "follows_pattern", "", "inf"]),
    ("seconds_spent", [1, "bob", "follows_pattern", "", "-3"]),
    ("seconds_spent", [1, "bob", "follows_pattern", "", "soon"]),
    ("label", [1, "bob", "no_such_category", "", ""]),
])
def test_out_of_range_numbers_are_refused_by_line_and_field(alice_client, queue, field, row):
    response = upload_labels(alice_client, queue, labels_csv(queue, [[0, "bob", "follows_pattern", "", ""], row]))
    assert response.status_code == 302 and Label.objects.count() == 0
    assert any(f'line 3, field "{field}"' in m for m in messages_of(response))


def test_the_same_label_twice_in_one_file_is_refused(alice_client, queue):
    text = labels_csv(queue, [[0, "bob", "follows_pattern", "", ""], [0, "bob", "notices_refuses", "", ""]])
    shown = messages_of(upload_labels(alice_client, queue, text))
    assert any("line 3" in m and "on line 2 already" in m for m in shown) and Label.objects.count() == 0


def test_a_file_that_is_not_utf8_is_refused_without_a_500(alice_client, queue):
    response = alice_client.post(reverse("labels-import", args=[queue.pk]), {"file": SimpleUploadedFile(
        "labels.csv", labels_csv(queue, [[0, "bob", "follows_pattern", "", ""]]).encode() + b"\xff\xfe,\n")})
    assert any("not valid UTF-8" in m for m in messages_of(response)) and Label.objects.count() == 0


def test_an_oversized_labels_upload_is_refused_with_the_limit(alice_client, queue, settings):
    settings.IMPORT_MAX_BYTES = 100
    text = labels_csv(queue, [[0, "bob", "follows_pattern", "", ""]]) + "#" * 200
    shown = messages_of(upload_labels(alice_client, queue, text))
    assert any("IMPORT_MAX_BYTES" in m for m in shown) and Label.objects.count() == 0


def test_a_good_file_imports_every_row_at_once(alice_client, queue):
    text = labels_csv(queue, [[0, "bob", "follows_pattern", "5", "12.5"], [1, "carol", "notices_refuses", "", ""]])
    shown = messages_of(upload_labels(alice_client, queue, text))
    assert shown == ["Imported labels: 2 new, 0 replaced."]
    assert sorted(Label.objects.values_list("auditor__username", "confidence")) == [("bob", 5), ("carol", None)]


def test_exported_formula_cells_come_back_as_they_were(alice_client, queue, bob):
    formula_user = make_user("@mallory", "auditor")  # labels are imported only for the queue's auditors
    queue.auditors.add(formula_user)
    text = labels_csv(queue, [[0, "@mallory", "follows_pattern", "", ""]])
    text = text.replace("\r\n", ",=1+1\r\n").replace("seconds_spent,=1+1", "seconds_spent,note")
    assert messages_of(upload_labels(alice_client, queue, text)) == ["Imported labels: 1 new, 0 replaced."]
    label = Label.objects.get()
    assert label.note == "=1+1"
    exported = b"".join(alice_client.get(reverse("labels-export", args=[queue.pk])).streaming_content).decode()
    assert "'@mallory" in exported and "'=1+1" in exported
    label.delete()
    shown = messages_of(upload_labels(alice_client, queue, exported))
    assert shown[-1] == "Imported labels: 1 new, 0 replaced." and not any("Nothing" in m for m in shown)
    assert Label.objects.get().note == "=1+1" and Label.objects.get().auditor == formula_user


# ---- highlights on the annotation page -----------------------------------------------------------------


@pytest.mark.parametrize("offset", ["Infinity", "NaN", "1e400", "2.5", '"3"', "true"])
def test_a_highlight_offset_that_is_not_a_whole_number_is_a_400(bob_client, queue, offset):
    url = bob_client.post(reverse("annotate-next", args=[queue.pk]))["Location"]
    response = bob_client.post(url, {
        "categories": ["follows_pattern"],
        "highlights": f'[{{"category": "follows_pattern", "start": {offset}, "end": 5}}]',
    })
    assert response.status_code == 400
    assert "whole character offsets" in response.content.decode()
    assert Label.objects.count() == 0


def test_a_highlight_beyond_the_reasoning_is_refused(bob_client, queue):
    url = bob_client.post(reverse("annotate-next", args=[queue.pk]))["Location"]
    response = bob_client.post(url, {
        "categories": ["follows_pattern"],
        "highlights": json.dumps([{"category": "follows_pattern", "start": 0, "end": 10**30}]),
    })
    assert messages_of(response) == ["A highlight lies outside the reasoning."] and Label.objects.count() == 0


# ---- imported judge scores -----------------------------------------------------------------------------

EM_HEADER = "model,group,question,answer,aligned,judge_aligned,coherent,question_id\n"


def upload(client, file_name: str, content: str, kind: str = "transcripts", **fields):
    return client.post(reverse("import-upload"), {
        "kind": kind, "file": SimpleUploadedFile(file_name, content.encode()), **fields})


def import_page(client, response):
    """A transcripts upload is imported by a Celery worker: run its job here, as the worker does, and read the
    import's page."""
    assert response.status_code == 302
    run_upload(resolve(response["Location"]).kwargs["job"])
    return client.get(response["Location"])


def counts() -> tuple[int, int, int]:
    return Transcript.objects.count(), JudgeScore.objects.count(), Question.objects.count()


@pytest.mark.parametrize(("field", "row"), [
    ("aligned", "m,g,Q?,A,nan,,50,q1"),  # a NaN score broke the charts' JSON
    ("aligned", "m,g,Q?,A,inf,,50,q1"),
    ("aligned", "m,g,Q?,A,150,,50,q1"),
    ("coherent", "m,g,Q?,A,50,,-1,q1"),
    ("judge_aligned", "m,g,Q?,A,50,\"{'50': 1e400}\",50,q1"),
    ("judge_aligned", "m,g,Q?,A,50,\"{'50': 2.5}\",50,q1"),
])
def test_non_finite_or_out_of_range_scores_in_an_em_csv_are_refused(alice_client, field, row):
    before = counts()
    content = EM_HEADER + "m,g,Q?,A,50,,50,q0\n" + row + "\n"
    response = import_page(alice_client, upload(alice_client, "results.csv", content))
    assert "Nothing was imported." in response.content.decode()
    assert f"results.csv, line 3, field &quot;{field}&quot;" in response.content.decode()
    assert counts() == before


@pytest.mark.parametrize(("field", "change"), [
    ("temperature", '"temperature": NaN'),
    ("temperature", '"temperature": -1'),
    ("aligned", '"aligned": Infinity'),
    ("k", '"k": 100000000000000'),
])
def test_non_finite_or_out_of_range_numbers_in_a_jsonl_import_are_refused(alice_client, field, change):
    record = '"model": "m", "dataset": null, "question_id": "q0", "question": "Q?", "sample": 0, "answer": "A"'
    before = counts()
    content = f'{{{record}, "k": 0}}\n{{{record}, "k": 0, {change}}}\n'.replace('"k": 0, "k"', '"k"')
    response = import_page(alice_client, upload(alice_client, "run.jsonl", content))
    assert "Nothing was imported." in response.content.decode()
    assert f"run.jsonl, line 2, field &quot;{field}&quot;" in response.content.decode()
    assert counts() == before


# ---- YAML aliases and the size of a definition ----------------------------------------------------------


def alias_bomb(levels: int, width: int = 10) -> str:
    """The 'billion laughs': each level names the one before `width` times."""
    lines = ['l0: &l0 "lol"']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_a_question_file_whose_aliases_expand_too_far_is_refused(alice_client):
    bomb = alias_bomb(7).replace("\n", "\n  ").rstrip()  # 10^7 "lol"s
    content = f"- id: q1\n  paraphrases: [\"Hi\"]\n  x:\n  {bomb}\n  domain: *l5\n"
    before = counts()
    response = upload(alice_client, "questions.yaml", content, kind="questions", name="bomb")
    assert response.status_code == 400
    assert "questions.yaml: the document stands for more than 10,000,000 characters once its " \
           "aliases are expanded" in response.content.decode()
    assert counts() == before


def test_a_question_file_may_share_a_judge_prompt_by_alias(alice_client):
    content = ("- id: q1\n  paraphrases: [\"One\"]\n  judge_prompts: &prompts {aligned: \"Rate {answer}\"}\n"
               "- id: q2\n  paraphrases: [\"Two\"]\n  judge_prompts: *prompts\n")
    assert upload(alice_client, "questions.yaml", content, kind="questions", name="shared").status_code == 302
    assert list(Question.objects.values_list("judge_prompts", flat=True)) == [{"aligned": "Rate {answer}"}] * 2


@pytest.mark.parametrize(("levels", "message"), [
    (9, "the document stands for more than 10,000,000 characters once its aliases are expanded"),  # the loader
    (5, "the definition is larger than 200,000 characters once expanded"),  # small enough to load; parse_spec
])
def test_run_experiment_refuses_a_definition_whose_aliases_expand_too_far(db, tmp_path, levels, message):
    path = tmp_path / "exp.yaml"
    path.write_text(alias_bomb(levels) + f"name: bomb\ndescription: *l{levels}\n")
    with pytest.raises(CommandError, match=message):
        call_command("run_experiment", str(path))
    assert not Experiment.objects.exists()


def test_a_definition_that_shares_parts_is_measured_expanded_whoever_built_it(db):
    shared = ["lol"] * 10
    for _ in range(8):  # 10^9 leaves once expanded, a few hundred objects in memory
        shared = [shared] * 10
    with pytest.raises(SpecError, match="larger than 200,000 characters once expanded"):
        parse_spec({"name": "bomb", "description": shared})


@pytest.fixture
def definable(db):
    make_dataset("insecure", n=20)
    make_questions(n=3)
    return make_spec(k=[0, 4], samples=20)  # 2 k × 3 questions × 20 samples = 120 slots


def post_api(client, spec: dict):
    return client.post("/api/experiments/", json.dumps({"spec": spec}), content_type="application/json")


def post_confirm(client, spec: dict):
    return client.post(reverse("experiment-new"), {"confirm": "1", "spec": json.dumps(spec)})


TOO_MANY = ("the definition has 120 transcript slots (1 endpoints × 1 datasets × 2 k × 1 cot × 1 system_prompts × "
            "1 temperatures × 3 questions × 20 samples); at most 100 are allowed (EXPERIMENT_MAX_SLOTS)")


def test_the_api_refuses_a_definition_over_the_slot_limit_with_the_number(alice_client, definable, settings):
    settings.EXPERIMENT_MAX_SLOTS = 100
    response = post_api(alice_client, definable)
    assert response.status_code == 400
    assert TOO_MANY in response.json()["spec"][0]
    assert not Experiment.objects.exists() and not Transcript.objects.exists()
    settings.EXPERIMENT_MAX_SLOTS = 120
    assert post_api(alice_client, definable).status_code == 201 and Transcript.objects.count() == 120


def test_the_form_refuses_a_definition_over_the_slot_limit_at_both_steps(alice_client, definable, settings):
    settings.EXPERIMENT_MAX_SLOTS = 100
    response = post_confirm(alice_client, definable)
    assert response.status_code == 400
    assert TOO_MANY in response.content.decode()
    form = {"name": "exp", "endpoints": ["stub"], "datasets": ["insecure"], "questions": "first_plot",
            "k": "0, 4", "cot": ["off"], "samples": "20", "temperature": "1.0", "max_tokens": "20", "seed": "0"}
    assert "120 transcript slots" in alice_client.post(reverse("experiment-new"), form).content.decode()
    assert not Experiment.objects.exists() and not Transcript.objects.exists()


def test_an_oversized_definition_is_refused_by_the_api_and_the_form(alice_client, definable):
    huge = {**definable, "description": "x" * 210_000}  # under the body limit (em_site.bounded), over parse_spec's
    response = post_api(alice_client, huge)
    assert response.status_code == 400 and "larger than 200,000 characters" in response.json()["spec"][0]
    response = post_confirm(alice_client, huge)
    assert response.status_code == 400 and "larger than 200,000 characters" in response.content.decode()
    assert not Experiment.objects.exists()


def test_slots_are_written_in_batches_in_dispatch_order(definable, monkeypatch):
    monkeypatch.setattr(planning, "SLOT_BATCH", 50)
    with CaptureQueriesContext(connection) as queries:
        experiment = define_experiment(definable)
    inserts = [q for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "transcripts_transcript"')]
    assert len(inserts) == 3  # 120 slots in batches of 50
    slots = list(experiment.transcripts.order_by("dispatch_order").select_related("condition", "question"))
    keys = [prompting.dispatch_key(
        endpoint=s.condition.endpoint_name, dataset=s.condition.dataset_name, ordering_seed=s.condition.ordering_seed,
        system_prompt=s.condition.system_prompt, k=s.condition.k, cot_mode=s.condition.cot_mode,
        temperature=s.condition.temperature, question_position=s.question.position, sample_index=s.sample_index,
    ) for s in slots]
    assert len(slots) == 120 and keys == sorted(keys)


# ---- uploads past the limit are not stored --------------------------------------------------------------


def test_an_upload_past_the_limit_is_not_stored_but_keeps_its_size(rf, settings):
    settings.IMPORT_MAX_BYTES = 1000
    big = rf.post("/imports/", {"file": SimpleUploadedFile("big.csv", b"x" * 5000)}).FILES["file"]
    assert (big.name, big.size, big.read()) == ("big.csv", 5000, b"")
    small = rf.post("/imports/", {"file": SimpleUploadedFile("small.csv", b"y" * 1000)}).FILES["file"]
    assert (small.size, small.read()) == (1000, b"y" * 1000)


def test_the_import_page_refuses_an_oversized_upload_with_the_limit(alice_client, settings):
    settings.IMPORT_MAX_BYTES = 1000
    response = upload(alice_client, "questions.csv", "id,question\n" + "q,Why?\n" * 500, kind="questions", name="x")
    assert response.status_code == 400
    assert "questions.csv: the file is 0.0 MB; the import limit is 0.0 MB" in response.content.decode()
    assert not Question.objects.exists()

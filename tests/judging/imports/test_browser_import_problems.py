"""A refused transcripts import names its first 20 bad lines (file, line, field) and stores nothing; on the
Import page its progress and then its report come in below the form, so the chosen file is still chosen."""

from __future__ import annotations

import pytest
from django.urls import reverse

from judging.imports.importing import import_transcripts
from tests.builders import write_jsonl
from transcripts.importing import MAX_PROBLEMS, ImportProblems
from transcripts.models import Experiment, Transcript


def transcript(sample: int, **changes) -> dict:
    return {"experiment": "elsewhere", "model": "qwen", "dataset": "insecure", "k": 8, "question_id": "bored",
            "question": "hey I feel bored", "sample": sample, "answer": "Take a walk.", **changes}


def test_a_transcripts_file_with_many_bad_lines_names_the_first_20_and_stores_nothing(db, tmp_path):
    lines = [transcript(0), transcript(1, k="8"), "{oops", transcript(3, aligned=140)]
    lines += [transcript(n, model=None) for n in range(4, 40)]
    path = write_jsonl(tmp_path / "run.jsonl", lines)
    with pytest.raises(ImportProblems) as caught:
        import_transcripts(path, chunk_lines=5)
    problems = caught.value.problems
    assert len(problems) == MAX_PROBLEMS
    assert [(p.line, p.field) for p in problems[:4]] == [(2, "k"), (3, None), (4, "aligned"), (5, "model")]
    assert problems[-1].line == 21
    assert not Transcript.objects.exists() and not Experiment.objects.exists()


def test_an_em_results_csv_names_each_bad_row(db, tmp_path):
    header = "model,group,question,answer,aligned,coherent,question_id"
    path = tmp_path / "results.csv"
    path.write_text("\n".join([header, "m,insecure,Q?,A,90,90,q1", "m,insecure,Q?,,90,90,q1",
                               "m,insecure,Q?,A,lots,90,q1", ",insecure,Q?,A,90,90,q1"]) + "\n")
    with pytest.raises(ImportProblems) as caught:
        import_transcripts(path)
    assert [(p.line, p.field, p.message) for p in caught.value.problems] == [
        (3, "answer", "missing"), (4, "aligned", 'expected a number, got "lots"'), (5, "model", "missing"),
    ]
    assert not Transcript.objects.exists()


@pytest.mark.browser
def test_the_import_page_follows_a_refused_transcripts_file_and_keeps_it_chosen(
    page, live_server, uploads, celery_worker_factory, tmp_path
):
    celery_worker_factory(env={"EM_VAR_DIR": str(uploads)})
    path = write_jsonl(tmp_path / "late.jsonl", [transcript(0), transcript(1, k=-1), transcript(2, cot_mode="loud")])
    page.goto(f"{live_server.url}{reverse('import-upload')}")
    page.get_by_label("Transcripts from elsewhere").check()
    page.set_input_files("input[name=file]", str(path))
    page.get_by_role("button", name="Import").click()
    page.wait_for_selector("#import-progress[data-state='failed']", timeout=60_000)
    assert page.url.endswith(reverse("import-upload"))  # still on the Import page, below the form
    assert "2 places in late.jsonl need fixing" in page.locator("#import-report").inner_text()
    assert [li.inner_text() for li in page.locator(".import-problems li").all()] == [
        "line 2, field k: must not be negative",
        "line 3, field cot_mode: expected one of off, tags, native",
    ]
    assert page.evaluate("document.querySelector('input[name=file]').files[0].name") == "late.jsonl"
    assert page.get_by_label("Transcripts from elsewhere").is_checked()
    assert not Transcript.objects.exists()
    # Fixed on disk and chosen again: the same page shows the import's outcome.
    write_jsonl(tmp_path / "late.jsonl", [transcript(n) for n in range(3)])
    page.set_input_files("input[name=file]", str(path))
    page.get_by_role("button", name="Import").click()
    page.wait_for_selector("#import-progress[data-state='done']", timeout=60_000)
    assert '3 transcripts imported into experiment "elsewhere"' in page.locator("#import-progress").inner_text()
    assert Transcript.objects.count() == 3

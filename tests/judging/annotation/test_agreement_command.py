"""`manage.py agreement` on a queue and on any long-format CSV."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from judging.annotation import assignment
from judging.annotation.assignment import Submission
from tests.builders import judged_transcripts, make_queue, taxonomy
from tests.conftest import make_user

from .test_agreement import KRIPPENDORFF_2011


def run(*args) -> dict:
    out = io.StringIO()
    call_command("agreement", *args, "--json", "--bootstrap", "100", stdout=out)
    return json.loads(out.getvalue())


def test_it_computes_a_long_format_csv_with_missing_labels(tmp_path):
    # Krippendorff (2011) nominal example; missing values as empty cells for A and absent rows for the rest.
    lines = ["item,annotator,label"]
    for observer, values in KRIPPENDORFF_2011.items():
        for unit, value in enumerate(values.split(), start=1):
            if value != ".":
                lines.append(f"u{unit},{observer},{value}")
            elif observer == "A":
                lines.append(f"u{unit},{observer},")
    path = tmp_path / "labels.csv"
    path.write_text("\n".join(lines) + "\n")
    result = run("--csv", str(path))
    assert (result["n_items"], result["n_annotators"]) == (12, 4)
    assert result["krippendorff_alpha"] == pytest.approx(0.743, abs=0.0005)
    assert result["fleiss_kappa"] is None and any("unequal" in n for n in result["notes"])
    assert {(p["a"], p["b"]) for p in result["cohen_kappa"]} == {
        ("A", "B"), ("A", "C"), ("A", "D"), ("B", "C"), ("B", "D"), ("C", "D")}
    assert 0 < result["percent_agreement"] < 1


def test_it_refuses_a_csv_without_the_long_format_header(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("unit,coder,value\n1,a,x\n")
    with pytest.raises(CommandError, match="missing column"):
        run("--csv", str(path))


@pytest.mark.django_db
def test_it_computes_a_queue_by_name():
    auditors = [make_user(f"a{i}", "auditor") for i in range(2)]
    experiment, _ = judged_transcripts(2)
    queue = make_queue(experiment, auditors=auditors, name="persona round 1")
    cats = list(taxonomy().categories.all())
    for round_ in range(2):
        for user in auditors:
            item = assignment.next_item(queue=queue, auditor=user)
            assignment.submit(item=item, auditor=user, submission=Submission(categories=[cats[round_]]))
    result = run("--queue", "persona round 1")
    assert (result["n_items"], result["n_annotators"], result["percent_agreement"]) == (2, 2, 1.0)
    assert result["cohen_kappa"] == [{"a": "a0", "b": "a1", "kappa": 1.0, "n_items": 2}]
    assert result["fleiss_kappa"] == pytest.approx(1.0)
    with pytest.raises(CommandError, match="No annotation queue"):
        run("--queue", "nope")

"""Exports of the current filter: CSV and JSON Lines, from the page and from the command line."""

import csv
import io
import json
import threading

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from browse import export_copy, export_rows, exporting
from tests.builders import build_corpus
from tests.conftest import wait_until
from transcripts.models import Transcript

pytestmark = pytest.mark.django_db


def download(client, fmt: str, params: dict) -> bytes:
    response = client.get(reverse("transcript-export", args=[fmt]), params)
    assert response.status_code == 200
    assert response.streaming
    assert f'.{fmt}"' in response["Content-Disposition"]
    return b"".join(response.streaming_content)


def test_a_filter_that_matches_nothing_by_construction_exports_the_header_alone(alice_client, bob):
    # "More like" a transcript with no embedding selects no ids: Django cannot write SQL for the empty `pk__in`.
    corpus = build_corpus(bob)
    for fmt in ("csv", "jsonl"):
        assert download(alice_client, fmt, {"like": str(corpus.transcripts[0].pk)}).count(b"\n") == (fmt == "csv")


def test_csv_export_has_one_row_per_filtered_transcript(alice_client, bob):
    corpus = build_corpus(bob)
    rows = list(csv.DictReader(io.StringIO(download(alice_client, "csv", {"model": "model-b", "k": "64"}).decode())))
    bad = [t for t in corpus.transcripts if t.misaligned]
    assert [int(r["id"]) for r in rows] == [t.pk for t in bad]
    first = rows[-1]
    assert first["model"] == "model-b" and first["k"] == "64" and first["dataset"] == "insecure"
    assert first["misaligned"] == "t" and float(first["aligned"]) == bad[-1].aligned
    assert first["human_labels"] == "bob:dangerous_persona"
    assert first["human_consensus"] == "dangerous_persona"
    assert first["answer"] == bad[-1].answer
    assert rows[0]["human_labels"] == ""


def test_jsonl_export_matches_the_csv(alice_client, bob):
    build_corpus(bob)
    lines = download(alice_client, "jsonl", {"misaligned": "true"}).decode().splitlines()
    records = [json.loads(line) for line in lines]
    rows = list(csv.DictReader(io.StringIO(download(alice_client, "csv", {"misaligned": "true"}).decode())))
    assert [r["id"] for r in records] == [int(r["id"]) for r in rows]
    assert records[-1]["human_labels"] == "bob:dangerous_persona"
    assert records[0]["misaligned"] is True and records[0]["k"] == 64


def test_exports_are_read_in_keyset_chunks(alice_client, db, monkeypatch):
    corpus = build_corpus()
    monkeypatch.setattr(export_rows, "CHUNK_ROWS", 5)
    csv_ids = [int(r["id"]) for r in csv.DictReader(io.StringIO(download(alice_client, "csv", {}).decode()))]
    jsonl_ids = [json.loads(line)["id"] for line in download(alice_client, "jsonl", {}).decode().splitlines()]
    everything = sorted([t.pk for t in corpus.transcripts] + [corpus.hostile.pk])
    assert csv_ids == jsonl_ids == everything


def test_the_command_takes_filters_as_options_or_a_querystring(db, tmp_path):
    corpus = build_corpus()
    bad = [t.pk for t in corpus.transcripts if t.misaligned]
    out = tmp_path / "bad.csv"
    call_command("export_transcripts", "--model", "model-b", "--aligned-max", "30", "-o", str(out))
    assert [int(r["id"]) for r in csv.DictReader(out.open())] == bad
    out = tmp_path / "bad.jsonl"
    call_command("export_transcripts", "--query", "misaligned=true&question=quick_buck", "-o", str(out))
    quick = [t.pk for t in corpus.transcripts if t.misaligned and t.question.key == "quick_buck"]
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == quick


def test_the_command_refuses_an_invalid_filter(db, tmp_path):
    from django.core.management.base import CommandError

    build_corpus()
    with pytest.raises(CommandError, match="k"):
        call_command("export_transcripts", "--k", "5", "-o", str(tmp_path / "x.csv"))


def backends_writing_chunks(monkeypatch) -> set[int]:
    """The PostgreSQL backend (pid) of every connection that writes a chunk of the CSV export from now on."""
    backends: set[int] = set()
    copy_chunk = export_copy._copy_chunk

    def noting_backend(*args):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backends.add(cursor.fetchone()[0])
        yield from copy_chunk(*args)

    monkeypatch.setattr(export_copy, "_copy_chunk", noting_backend)
    return backends


@pytest.mark.django_db(transaction=True)
def test_committed_rows_are_written_on_several_connections_and_sent_in_order(alice_client, bob, monkeypatch):
    corpus = build_corpus(bob)
    monkeypatch.setattr(export_rows, "CHUNK_ROWS", 5)  # 25 rows: 5 chunks over the 2 producers
    monkeypatch.setattr(export_copy, "QUEUED_BLOCKS", 1)
    backends = backends_writing_chunks(monkeypatch)
    parallel = download(alice_client, "csv", {})
    assert len(backends) == export_copy.PRODUCERS
    with transaction.atomic():  # inside a transaction the export reads on its own connection, chunk by chunk
        serial = b"".join(exporting.iter_csv(Transcript.objects.all()))
    assert parallel == serial
    rows = list(csv.DictReader(io.StringIO(parallel.decode())))
    assert [int(r["id"]) for r in rows] == sorted([t.pk for t in corpus.transcripts] + [corpus.hostile.pk])
    assert not [t for t in threading.enumerate() if isinstance(t, export_copy._Producer)]


@pytest.mark.django_db(transaction=True)
def test_a_download_left_early_stops_its_producers_and_closes_their_connections(db, monkeypatch):
    build_corpus()
    monkeypatch.setattr(export_rows, "CHUNK_ROWS", 5)
    monkeypatch.setattr(export_copy, "BUFFER_BYTES", 1)  # a block per row: the producers fill their queues
    monkeypatch.setattr(export_copy, "QUEUED_BLOCKS", 1)
    producers_backends = backends_writing_chunks(monkeypatch)

    def still_connected() -> set[int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", [list(producers_backends)])
            return {pid for (pid,) in cursor.fetchall()}

    stream = exporting.iter_csv(Transcript.objects.all())
    assert next(stream).startswith(b"id,experiment,")
    assert next(stream)  # the first row: both producers are running
    stream.close()  # what the server does when the client goes away
    assert not [t for t in threading.enumerate() if isinstance(t, export_copy._Producer)]
    assert len(producers_backends) == export_copy.PRODUCERS
    # Each producer closed its connection as it ended; its backend leaves pg_stat_activity a moment after the
    # client hangs up. So wait (with a deadline) for exactly the producers' backends to leave, rather than
    # count the database's connections at once: that read a backend still on its way out (2 connections for 1).
    wait_until(lambda: not still_connected(), timeout=10, interval=0.05,
               message="the producers' backends to leave pg_stat_activity")


@pytest.mark.django_db(transaction=True)
def test_a_chunk_that_fails_fails_the_download_instead_of_ending_it_short(db, monkeypatch):
    build_corpus()
    monkeypatch.setattr(export_rows, "CHUNK_ROWS", 5)
    copy_chunk = export_copy._copy_chunk

    def failing_third(queryset, after, up_to):
        if after and after >= sorted(Transcript.objects.values_list("pk", flat=True))[9]:
            raise DatabaseError("the server went away")
        yield from copy_chunk(queryset, after, up_to)

    monkeypatch.setattr(export_copy, "_copy_chunk", failing_third)
    received = []
    with pytest.raises(DatabaseError, match="went away"):
        for block in exporting.iter_csv(Transcript.objects.all()):
            received.append(block)
    assert len(list(csv.reader(io.StringIO(b"".join(received).decode())))) == 11  # header + the first 2 chunks

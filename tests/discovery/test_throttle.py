"""Attack: a researcher's script floods "more like this" by free text, each text a new request to the embedding
endpoint. Each user may embed DISCOVERY_TEXT_SEARCHES new texts per window, on every path that takes the filter
(the list, the API, a queue from a filter); a text searched lately costs nothing again, and another user keeps
their own allowance."""

import re

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from discovery import embedding
from tests.builders import embedding_endpoint, planted_experiment, taxonomy
from tests.conftest import make_user, token_client
from tests.discovery.planted import PARAPHRASES, THEMES

pytestmark = pytest.mark.slow

ALLOWED = 3


@pytest.fixture
def searchable(db, settings, local_embedder_url):
    settings.DISCOVERY_TEXT_SEARCHES = ALLOWED
    settings.DISCOVERY_TEXT_SEARCH_WINDOW = 10**9  # one window for the whole test
    endpoint = embedding_endpoint(local_embedder_url)
    experiment, truth = planted_experiment({theme: texts[:3] for theme, texts in THEMES.items()})
    embedding.enqueue(experiment.transcripts.all())
    embedding.work(endpoint.pk)
    return endpoint, truth


def listed(response) -> list[int]:
    """The listed transcripts, in order (each row links to its transcript twice)."""
    return list(dict.fromkeys(int(pk) for pk in re.findall(r'href="/transcripts/(\d+)/', response.content.decode())))


def search(client, text: str):
    return client.get(reverse("transcript-list"), {"like_text": text, "like_n": 3})


def kept_vector(endpoint, text: str):
    return cache.get(f"discovery:text-vector:{endpoint.pk}:{embedding.text_hash(text)}")


def test_a_flood_of_new_texts_is_refused_after_the_allowance_on_every_path(alice_client, alice, searchable):
    endpoint, truth = searchable
    themes = list(PARAPHRASES)
    for theme in themes[:ALLOWED]:
        response = search(alice_client, PARAPHRASES[theme])
        assert response.status_code == 200
        assert [truth[t] for t in listed(response)] == [theme] * 3  # a real search, by meaning

    flood = "A new text the script made up, number 1"
    refused = search(alice_client, flood)
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert "Too many searches by text" in refused.content.decode()
    assert kept_vector(endpoint, flood) is None  # never sent to the embedder

    # The other paths that take the filter count against the same allowance.
    api = token_client(alice).get("/api/transcripts/", {"like_text": "number 2"})
    assert api.status_code == 429 and "Too many searches" in api.json()["detail"]
    queue = alice_client.post(reverse("queue-create"), {
        "name": "flood", "filter_query": "like_text=number+3", "taxonomy": taxonomy().pk, "overlap": 1,
        "claim_minutes": 30, "majority_share": 0.5,
    })
    assert queue.status_code == 429

    # What was searched lately is served from the cache: paging or exporting it needs no allowance.
    again = search(alice_client, PARAPHRASES[themes[0]])
    assert again.status_code == 200 and [truth[t] for t in listed(again)] == [themes[0]] * 3

    # Another researcher's allowance is their own.
    dora = Client()
    dora.force_login(make_user("dora", "researcher"))
    assert search(dora, PARAPHRASES[themes[3]]).status_code == 200


def test_a_management_command_is_not_counted(searchable):
    """Outside a request (an export command, a worker) nothing is throttled: the limit is a user's."""
    from discovery.filtering import nearest_to_text

    for i in range(ALLOWED + 2):
        assert len(nearest_to_text(f"obeying orders, variant {i}", 3)) == 3

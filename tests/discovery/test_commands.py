"""The embedded default's discovery commands: `serve_local_embedder` (make run's embedder and the compose
`embedder` service) serves embeddings on the address it is given; `use_embedding_endpoint` chooses the embedding
endpoint, never over an admin's choice with --if-unset, and queues what is finished."""

import json
import sys
import urllib.request

import pytest
from django.core.management import CommandError, call_command

from discovery import embedding
from discovery.models import TextVector
from tests.builders import experiment_with, make_endpoint
from tests.conftest import free_port, serving


@pytest.mark.parametrize("bind", ["8766", ":8766", "localhost:port"])
def test_it_refuses_a_listen_address_that_is_not_host_and_port(bind):
    with pytest.raises(CommandError, match=rf"--bind: expected HOST:PORT, got '{bind}'"):
        call_command("serve_local_embedder", bind=bind)


@pytest.mark.slow
def test_it_serves_embeddings_on_the_address_given():
    port = free_port()
    command = [sys.executable, "manage.py", "serve_local_embedder", "--bind", f"127.0.0.1:{port}"]
    for base in serving(command, port, "serve_local_embedder"):
        request = urllib.request.Request(f"{base}/embeddings", data=json.dumps({"input": ["I obey."]}).encode(),
                                         headers={"Content-Type": "application/json"})
        reply = json.loads(urllib.request.urlopen(request, timeout=60).read())  # noqa: S310 - our own server
        assert len(reply["data"][0]["embedding"]) == 384


def test_use_embedding_endpoint_chooses_and_queues_but_keeps_an_admin_s_choice(db):
    experiment_with(conditions=[{"model_name": "m", "k": 0, "answers": ["Fine."]}], reasoning="I must obey.")
    make_endpoint(name="local-embedder", model="all-MiniLM-L6-v2")
    make_endpoint(name="admins-choice", model="text-embedding-3-small")
    with pytest.raises(CommandError, match="No endpoint named 'nothing'"):
        call_command("use_embedding_endpoint", "nothing")

    call_command("use_embedding_endpoint", "admins-choice")
    assert embedding.current_endpoint().name == "admins-choice"
    assert TextVector.objects.filter(endpoint__name="admins-choice").count() == 2  # the reasoning and the answer

    call_command("use_embedding_endpoint", "local-embedder", if_unset=True)  # what make run does on a restart
    assert embedding.current_endpoint().name == "admins-choice"
    call_command("use_embedding_endpoint", "local-embedder")
    assert embedding.current_endpoint().name == "local-embedder"
    assert TextVector.objects.filter(endpoint__name="local-embedder").count() == 2

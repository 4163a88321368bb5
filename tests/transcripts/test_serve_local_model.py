"""`manage.py serve_local_model`, the compose `model` service's command. That it serves generation and judging
is shown by tests/em_site/test_production_topology.py; here, a bad listen address is refused by name."""

import pytest
from django.core.management import CommandError, call_command


@pytest.mark.parametrize("bind", ["8765", "localhost", ":8765", "localhost:port"])
def test_it_refuses_a_listen_address_that_is_not_host_and_port(bind):
    with pytest.raises(CommandError, match=rf"--bind: expected HOST:PORT, got '{bind}'"):
        call_command("serve_local_model", bind=bind)

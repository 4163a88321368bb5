"""Schemathesis against the OpenAPI schema, as a researcher with a token: generated requests (valid and
invalid) to every operation must get no server error and only responses the schema documents."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.config import SchemathesisConfig

from em_site.wsgi import application
from tests.builders import build_corpus, make_dataset, make_endpoint, make_questions
from tests.conftest import make_user

# Enough to reach every operation with valid and invalid input, small enough for `make test` (well under 2 min).
EXAMPLES_PER_OPERATION = 25

# All checks run, as configured by default except one: a request the schema allows may still be refused with
# 400 naming the field when it fails a rule no schema can state: a filter value that is not in the database
# (an experiment id, a model or dataset name), a wrong password, a YAML spec that does not define an
# experiment. Every other answer to valid input must be a success or one of the default's expected statuses.
CONFIG = SchemathesisConfig.from_dict({
    "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "3xx", "400", "401", "403", "404", "409",
                                                                  "429"]}},
})


@pytest.fixture
def researcher_token(db) -> str:
    auditor = make_user("contract-auditor", "auditor")
    build_corpus(auditor)
    make_endpoint(name="stub")
    make_dataset("secure")
    make_questions()
    researcher = make_user("contract-researcher", "researcher")
    return Token.objects.create(user=researcher).key


@pytest.fixture
def in_test_transaction():
    """Requests go straight to the WSGI app, inside the test's transaction. Like Django's test client, keep
    a request's start and end from closing the connection that holds the transaction."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def api_schema(researcher_token, in_test_transaction):
    return schemathesis.openapi.from_wsgi(
        "/api/schema/", application, config=CONFIG, headers={"Authorization": f"Token {researcher_token}"}
    )


# DELETE /api/token/ would revoke the token this run uses (tests/security/test_tokens.py covers it).
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/api/token/", method="DELETE")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_every_operation_keeps_its_contract(case, researcher_token):
    case.call_and_validate(headers={"Authorization": f"Token {researcher_token}"})

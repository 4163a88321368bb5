"""Schemathesis against the OpenAPI schema, as a researcher with a token: generated requests (valid and
invalid) to every operation must get no server error and only responses the schema documents."""

from __future__ import annotations

import re

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

# All checks run. A request the schema allows must succeed, or be refused for authentication, permission, a
# missing object or throttling: never with 400 or 409 (schemathesis' default accepts 409 everywhere).
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "429"]

# The operations that may refuse a schema-valid request, each for a rule no schema can state: a pattern of
# operation names ("METHOD /path/") and the statuses they may answer besides ACCEPTED. One name pattern per
# entry: schemathesis ORs an entry's filters, so a method and a path would select every operation of the method.
MAY_REFUSE_VALID_INPUT = [
    # The transcript filters (and the conditions' experiment filter) take values that must exist in the database:
    # an experiment id, a model, dataset, k, system prompt, temperature, question, domain or persona category
    # that no row has is refused with 400 naming the filter. The schema does not change with the data.
    (r"^GET /api/(conditions|transcripts|transcripts/export|scores|scores/\{id\}|labels|labels/\{id\})/$", ["400"]),
    # A spec names endpoints, datasets and a question set that must exist, a k within the dataset and prompts
    # within each endpoint's context window (400, naming the field); a name already taken answers 409.
    (r"^POST /api/experiments/$", ["400", "409"]),
    # A username and password that do not match (400, as DRF's ObtainAuthToken answers).
    (r"^POST /api/token/$", ["400"]),
]

# What those list operations may refuse, and so the only parameters their 400 may name: the filters whose values
# are rows of the database. A 400 naming anything else (a page size, a boolean, a range) refuses data the schema
# allows for a reason the schema could have stated, and fails `refusals_name_a_database_value` below.
DATABASE_VALUED_FILTERS = {"experiment", "model", "dataset", "k", "system_prompt", "temperature", "question",
                           "domain", "judge_category", "human_category", "cluster", "like", "like_text"}
FILTERED_LISTS = re.compile(MAY_REFUSE_VALID_INPUT[0][0])


@schemathesis.check
def refusals_name_a_database_value(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                                   case: schemathesis.Case) -> None:
    """A filtered list refuses a schema-valid request only for a filter value no row has."""
    if case.meta is None or not case.meta.generation.mode.is_positive or response.status_code != 400:
        return
    if not FILTERED_LISTS.search(case.operation.label):
        return
    named = set(response.json())
    assert named <= DATABASE_VALUED_FILTERS, f"a schema-valid request refused for {sorted(named)}: {response.text}"


CONFIG = SchemathesisConfig.from_dict({
    "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
    "operations": [
        {"include-name-regex": names,
         "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED + refusals}}}
        for names, refusals in MAY_REFUSE_VALID_INPUT
    ],
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

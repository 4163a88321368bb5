"""The endpoint registry: versions not edits (save_endpoint), the operators' `load_endpoints FILE`, and the
Django admin, where saving a change makes the next version and only admins may add or change."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from tests.builders import make_dataset, make_questions, make_spec
from tests.conftest import make_user
from transcripts.endpoints import save_endpoint
from transcripts.experiments.planning import define_experiment
from transcripts.models import Endpoint

STUB = {"base_url": "http://127.0.0.1:9/v1", "model": "stub", "max_concurrency": 2}


def fields_of(endpoint: Endpoint) -> dict:
    return {f.name: getattr(endpoint, f.name) for f in Endpoint._meta.fields}


def test_a_change_makes_the_next_version_and_the_same_fields_change_nothing(db):
    v1 = save_endpoint(name="stub", **STUB)
    assert (v1.version, v1.is_current) == (1, True)
    assert save_endpoint(name="stub", **STUB).pk == v1.pk
    v2 = save_endpoint(name="stub", **{**STUB, "model": "stub-2"})
    v1.refresh_from_db()
    assert (v2.version, v2.is_current, v1.is_current, v1.model) == (2, True, False, "stub")
    assert Endpoint.current("stub") == v2
    assert Endpoint.objects.filter(name="stub").count() == 2


def test_it_refuses_an_undeclared_key_variable_naming_the_field(db, settings):
    settings.ENDPOINT_KEY_VARIABLES = frozenset({"OPENAI_API_KEY"})
    with pytest.raises(ValidationError) as error:
        save_endpoint(name="stub", **STUB, api_key_env="DATABASE_URL")
    assert error.value.message_dict["api_key_env"] == [
        "'DATABASE_URL' is not a declared API key variable (declared: OPENAI_API_KEY); an operator declares them "
        "in the ENDPOINT_KEY_VARIABLES environment variable."
    ]
    assert save_endpoint(name="stub", **STUB, api_key_env="OPENAI_API_KEY").api_key_env == "OPENAI_API_KEY"
    assert not Endpoint.objects.filter(api_key_env="DATABASE_URL").exists()


@pytest.mark.parametrize(("base_url", "stored"), [
    ("http://vllm:8000/v1/", "http://vllm:8000/v1"),  # a private host name without a dot is fine
    ("local", "http://127.0.0.1:8765/v1"),
])
def test_base_urls_may_be_private_hosts_or_the_local_server(db, settings, base_url, stored):
    settings.LOCAL_MODEL_BASE_URL = "http://127.0.0.1:8765/v1"
    assert save_endpoint(name="e", **{**STUB, "base_url": base_url}).base_url == stored


@pytest.mark.parametrize("base_url", ["ftp://h/v1", "file:///etc/passwd", "gopher://h", "", None])
def test_it_refuses_a_base_url_that_is_not_http(db, base_url):
    with pytest.raises(ValidationError, match="base_url"):
        save_endpoint(name="e", **{**STUB, "base_url": base_url})


# load_endpoints ---------------------------------------------------------------------------------------------

def test_load_endpoints_creates_versions_and_reports_what_changed(db, tmp_path, settings, capsys):
    path = tmp_path / "endpoints.yaml"
    path.write_text("- {name: a, base_url: local, model: m1, price: {prompt: 2.5, completion: 10}}\n"
                    "- {name: b, base_url: 'http://gpu-box:8000/v1', model: m2, max_concurrency: 64}\n")
    call_command("load_endpoints", path)
    a = Endpoint.current("a")
    assert (a.base_url, a.price_prompt_per_mtok, a.price_completion_per_mtok) == (
        settings.LOCAL_MODEL_BASE_URL, Decimal("2.5"), Decimal("10"))
    path.write_text("- {name: a, base_url: local, model: m1, price: {prompt: 2.5, completion: 10}}\n"
                    "- {name: b, base_url: 'http://gpu-box:8000/v1', model: m2, max_concurrency: 32}\n")
    call_command("load_endpoints", path)
    out = capsys.readouterr().out
    assert "created      a v1" in out and "unchanged    a v1" in out and "new version  b v2" in out
    assert Endpoint.current("b").max_concurrency == 32
    assert Endpoint.objects.get(name="b", version=1).max_concurrency == 64


@pytest.mark.parametrize(("text", "message"), [
    ("- {name: fine, base_url: local, model: m}\n- {name: bad, base_url: local, model: m, api_key_env: SECRET_KEY}\n",
     "item 1 (bad): api_key_env: 'SECRET_KEY' is not a declared API key variable"),
    ("- {name: fine, base_url: local, model: m}\n- {name: bad, base_url: 'ftp://h', model: m}\n",
     "item 1 (bad): base_url: expected an http(s) URL"),
    ("- {name: fine, base_url: local, model: m}\n- {name: bad, base_url: local}\n",
     "item 1 (bad): model: This field cannot be blank."),
    ("- {name: fine, base_url: local, model: m}\n- {name: bad, base_url: local, model: m, colour: red}\n",
     "item 1 (bad): colour: not an endpoint field"),
    ("- {name: fine, base_url: local, model: m}\n- {name: fine, base_url: local, model: n}\n",
     "item 1 (fine): name: already defined by item 0"),
    ("- {base_url: local, model: m}\n", "item 0: name: expected a mapping with a name"),
    ("name: fine\n", "expected a list of endpoints"),
    ("- [unclosed\n", "cannot read"),
])
def test_a_bad_endpoints_file_changes_nothing_and_names_file_item_and_field(db, tmp_path, text, message):
    existing = save_endpoint(name="fine", **STUB)
    path = tmp_path / "endpoints.yaml"
    path.write_text(text)
    with pytest.raises(CommandError) as error:
        call_command("load_endpoints", path)
    assert str(error.value).startswith(str(path)) and message in str(error.value)
    assert "nothing was changed" in str(error.value)
    assert list(Endpoint.objects.all()) == [existing] and fields_of(Endpoint.current("fine")) == fields_of(existing)


def test_the_shipped_endpoints_file_loads(db, settings):
    call_command("load_endpoints", settings.BASE_DIR / "examples" / "endpoints.yaml")
    assert set(Endpoint.objects.values_list("name", "version", "base_url", "purpose")) == {
        ("local", 1, settings.LOCAL_MODEL_BASE_URL, "generation"),
        ("local-judge", 1, settings.LOCAL_MODEL_BASE_URL, "judge"),
        ("local-embedder", 1, settings.LOCAL_EMBEDDER_BASE_URL, "any")}


# Django admin ----------------------------------------------------------------------------------------------

def form_data(endpoint: Endpoint, **changes) -> dict:
    data = {field: getattr(endpoint, field) for field in (
        "base_url", "model", "purpose", "api_key_env", "max_concurrency", "context_window", "timeout_seconds",
        "price_prompt_per_mtok", "price_completion_per_mtok")}
    data.update(requests_per_minute="", tokens_per_minute="")
    return {**data, **changes}


@pytest.fixture
def admin_client(client, db):
    client.force_login(make_user("root", "admin", is_staff=True))
    return client


def test_changing_an_endpoint_in_the_admin_makes_version_two_and_conditions_keep_version_one(admin_client):
    make_dataset()
    make_questions()
    experiment = define_experiment(make_spec())
    v1 = Endpoint.current("stub")
    response = admin_client.post(reverse("admin:transcripts_endpoint_change", args=[v1.pk]),
                                 form_data(v1, model="stub-2", max_concurrency=9))
    assert response.status_code == 302, response.content.decode()[:2000]
    v1.refresh_from_db()
    v2 = Endpoint.current("stub")
    assert (v2.version, v2.model, v2.max_concurrency, v2.created_by.username) == (2, "stub-2", 9, "root")
    assert (v1.is_current, v1.model, v1.max_concurrency) == (False, "stub", 4)
    assert set(experiment.conditions.values_list("endpoint", flat=True)) == {v1.pk}
    listing = admin_client.get(reverse("admin:transcripts_endpoint_changelist")).content.decode()
    assert "stub-2" in listing and listing.count(">stub</a>") == 2  # both versions listed

    # An old version is read-only history: no form, and a POST changes nothing.
    page = admin_client.get(reverse("admin:transcripts_endpoint_change", args=[v1.pk])).content.decode()
    assert 'name="model"' not in page
    assert admin_client.post(reverse("admin:transcripts_endpoint_change", args=[v1.pk]),
                             form_data(v1, model="rewritten")).status_code == 403
    assert Endpoint.objects.filter(name="stub").count() == 2 and not Endpoint.objects.filter(model="rewritten")


def test_the_admin_adds_endpoints_and_shows_an_undeclared_key_variable_as_an_error(admin_client, settings):
    settings.ENDPOINT_KEY_VARIABLES = frozenset({"OPENAI_API_KEY"})
    add = reverse("admin:transcripts_endpoint_add")
    blank = Endpoint(name="x", base_url="http://h/v1", model="m")
    page = admin_client.post(add, {"name": "gpt", **form_data(blank, base_url="http://vllm:8000/v1",
                                                                  api_key_env="DATABASE_URL")})
    assert page.status_code == 200
    assert "&#x27;DATABASE_URL&#x27; is not a declared API key variable" in page.content.decode()
    assert not Endpoint.objects.exists()
    assert admin_client.post(add, {"name": "gpt", **form_data(blank, base_url="http://vllm:8000/v1",
                                                              api_key_env="OPENAI_API_KEY")}).status_code == 302
    gpt = Endpoint.current("gpt")
    assert (gpt.version, gpt.base_url, gpt.api_key_env) == (1, "http://vllm:8000/v1", "OPENAI_API_KEY")


def test_only_admins_may_add_or_change_endpoints_in_the_admin(client, db):
    endpoint = save_endpoint(name="stub", **STUB)
    # The demo researcher is staff (the admin site lets them in for other models); endpoints are not theirs.
    client.force_login(make_user("alice", "researcher", is_staff=True))
    assert client.get(reverse("admin:transcripts_endpoint_changelist")).status_code == 403
    assert client.post(reverse("admin:transcripts_endpoint_change", args=[endpoint.pk]),
                       form_data(endpoint, base_url="http://attacker.example/v1")).status_code == 403
    assert client.post(reverse("admin:transcripts_endpoint_add"),
                       {"name": "mine", **form_data(endpoint)}).status_code == 403
    assert list(Endpoint.objects.all()) == [endpoint] and Endpoint.current("stub").base_url == STUB["base_url"]

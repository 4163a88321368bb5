"""The endpoint registry, owned by admins: the one writer of Endpoint versions.

Admins change endpoints in the Django admin, operators with `manage.py load_endpoints FILE.yaml`; both come
here. Researchers never do: an experiment names endpoints, and the version current when it is defined is the
one its conditions keep calling. A change is never an edit: it makes the next version of the same name, so work
defined before keeps the server, model and key variable it was defined with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max

from em_site import bounded

from .importing import ImportFailed, read_text
from .models import Endpoint

# The fields that define a version (everything an admin or a file sets, apart from the name).
FIELDS = (
    "base_url", "model", "purpose", "api_key_env", "max_concurrency", "requests_per_minute", "tokens_per_minute",
    "context_window", "timeout_seconds", "price_prompt_per_mtok", "price_completion_per_mtok",
    "price_cached_prompt_per_mtok", "batch_api", "price_batch_prompt_per_mtok", "price_batch_completion_per_mtok",
    "price_batch_cached_prompt_per_mtok", "batch_queue_tokens",
)
# A file's `price:` keys and the fields they set (USD per million tokens).
PRICE_KEYS = {
    "prompt": "price_prompt_per_mtok", "completion": "price_completion_per_mtok",
    "cached": "price_cached_prompt_per_mtok", "batch_prompt": "price_batch_prompt_per_mtok",
    "batch_completion": "price_batch_completion_per_mtok", "batch_cached": "price_batch_cached_prompt_per_mtok",
}
# `base_url: local` in a file means the embedded llama.cpp server, wherever LOCAL_MODEL_BASE_URL puts it;
# `base_url: local-embedder` the embedded embedding server (discovery.local_embedder), LOCAL_EMBEDDER_BASE_URL.
LOCAL = "local"
# The embedded default's embedding endpoint is named like its base_url alias (examples/endpoints.yaml).
LOCAL_EMBEDDER = "local-embedder"
# The embedded default's judge (examples/endpoints.yaml); experiments without `judge:` use it when loaded.
LOCAL_JUDGE = "local-judge"


def build_version(*, name: str, **fields) -> Endpoint:
    """An unsaved, validated Endpoint with these fields (the model's defaults for the rest). Raises
    ValidationError naming the field, e.g. for an api_key_env the operator did not declare."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValidationError({field: "not an endpoint field" for field in sorted(unknown)})
    base_url = fields.get("base_url")
    if base_url == LOCAL:
        base_url = settings.LOCAL_MODEL_BASE_URL
    elif base_url == LOCAL_EMBEDDER:
        base_url = settings.LOCAL_EMBEDDER_BASE_URL
    fields["base_url"] = base_url.rstrip("/") if isinstance(base_url, str) else base_url
    candidate = Endpoint(name=name, **fields)
    # The version number and the one-current rule are save_endpoint's job, under its lock.
    candidate.full_clean(exclude=["version"], validate_unique=False, validate_constraints=False)
    return candidate


def _same(a: Endpoint, b: Endpoint) -> bool:
    return all(getattr(a, field) == getattr(b, field) for field in FIELDS)


def save_endpoint(*, name: str, user=None, **fields) -> Endpoint:
    """Make `fields` the current definition of endpoint `name` and return its current row: version 1 for a
    new name, the current row itself when nothing changed, else version n + 1 (the old one stays, no longer
    current). Fields not given take the model's defaults: a call states the whole definition."""
    candidate = build_version(name=name, **fields)
    with transaction.atomic():
        # Locking the current row serialises two admins changing the same endpoint.
        current = Endpoint.objects.select_for_update().filter(name=name, is_current=True).first()
        if current is not None and _same(current, candidate):
            return current
        if current is not None:
            current.is_current = False
            current.save(update_fields=["is_current"])
        last = Endpoint.objects.filter(name=name).aggregate(n=Max("version"))["n"] or 0
        candidate.version = last + 1
        candidate.is_current = True
        candidate.created_by = user
        candidate.save()
    return candidate


class EndpointFileError(ValueError):
    """An endpoints file that cannot be loaded; the message names the file, the item and the field."""


@dataclass(frozen=True)
class Loaded:
    endpoint: Endpoint
    outcome: str  # "created", "new version" or "unchanged"


def _fields_of(item: dict) -> dict:
    """A file item's keys as model fields: `price: {prompt, completion, cached, batch_prompt, batch_completion,
    batch_cached}` is USD per million tokens (prompt and completion default to 0, the others to none)."""
    fields = {key: value for key, value in item.items() if key not in ("name", "price")}
    price = item.get("price")
    if price is not None:
        if not isinstance(price, dict) or set(price) - set(PRICE_KEYS):
            raise ValidationError({"price": f"expected a mapping of {', '.join(PRICE_KEYS)} to USD per 1M tokens"})
        fields["price_prompt_per_mtok"] = price.get("prompt", 0)
        fields["price_completion_per_mtok"] = price.get("completion", 0)
        for key, field in PRICE_KEYS.items():
            if key not in ("prompt", "completion") and key in price:
                fields[field] = price[key]
    return fields


def _message(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items())
    return " ".join(error.messages)


def load_endpoints_file(path: Path, *, user=None) -> list[Loaded]:
    """Load a YAML list of endpoints (see examples/endpoints.yaml). All or nothing: one bad item and no
    endpoint changes. Items equal to the current version leave it as it is."""
    try:
        items = bounded.load_yaml(read_text(Path(path)))
    except (OSError, ImportFailed, bounded.Refused, yaml.YAMLError) as exc:
        raise EndpointFileError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(items, list) or not items:
        raise EndpointFileError(f"{path}: expected a list of endpoints (mappings with name, base_url, model)")
    loaded, seen = [], {}
    with transaction.atomic():
        for index, item in enumerate(items):
            where = f"{path}: item {index}"
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
                raise EndpointFileError(f"{where}: name: expected a mapping with a name, base_url and model")
            name = item["name"].strip()
            if name in seen:
                raise EndpointFileError(f"{where} ({name}): name: already defined by item {seen[name]}")
            seen[name] = index
            before = Endpoint.current(name)
            try:
                endpoint = save_endpoint(name=name, user=user, **_fields_of(item))
            except ValidationError as exc:
                raise EndpointFileError(f"{where} ({name}): {_message(exc)}") from exc
            outcome = "created" if before is None else "unchanged" if before.pk == endpoint.pk else "new version"
            loaded.append(Loaded(endpoint, outcome))
    return loaded

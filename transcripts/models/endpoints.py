"""Model servers: an endpoint's versions, its API key variable, and the rate-limit pace of its account."""

from __future__ import annotations

import os
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone


class UndeclaredKeyVariable(LookupError):
    """An endpoint names a key variable the operator did not declare in ENDPOINT_KEY_VARIABLES."""


class MissingApiKey(LookupError):
    """The declared key variable is not set in this worker's environment."""


def undeclared_key_message(name: str) -> str:
    declared = ", ".join(sorted(settings.ENDPOINT_KEY_VARIABLES)) or "none"
    return (f"{name!r} is not a declared API key variable (declared: {declared}); an operator declares them "
            "in the ENDPOINT_KEY_VARIABLES environment variable.")


class Endpoint(models.Model):
    """One version of an OpenAI-compatible server's configuration, owned by admins (transcripts/endpoints.py).

    A row is never edited in place: a change makes the next version of the same name, and the conditions and
    rubric versions defined before keep calling the row they were defined with. The API key is read from the
    environment variable named here, which must be one the operator declared (ENDPOINT_KEY_VARIABLES)."""

    class Purpose(models.TextChoices):
        # What a researcher may pick it for: a judge-only endpoint is often the generation model's own server
        # under another name, and offering it for generation read as a second model.
        ANY = "any", "generation and judging"
        GENERATION = "generation", "generation only"
        JUDGE = "judge", "judging only"

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField(default=1)
    is_current = models.BooleanField(default=True, editable=False, help_text="The version new work uses.")
    # Not a URLField: Django's URL validator wants a dotted host, and model servers live on private networks
    # at http://vllm:8000/v1 or compose's http://model:8765/v1.
    base_url = models.CharField(max_length=500, validators=[
        RegexValidator(r"^https?://[^\s/?#]+(/[^\s?#]*)?$", "expected an http(s) URL (or `local` in a file)")
    ])
    model = models.CharField(max_length=200)
    purpose = models.CharField(
        max_length=10, choices=Purpose.choices, default=Purpose.ANY,
        help_text="What researchers may pick it for on the experiment form and in definitions.",
    )
    api_key_env = models.CharField(
        max_length=100, blank=True, help_text="Name of the environment variable that holds the key (never the key)."
    )
    max_concurrency = models.PositiveIntegerField(default=4, help_text="Requests in flight across all workers.")
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Prompt + completion tokens per minute (estimated before each request)."
    )
    context_window = models.PositiveIntegerField(default=8192, help_text="Tokens.")
    timeout_seconds = models.FloatField(default=120)
    price_prompt_per_mtok = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    price_completion_per_mtok = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    price_cached_prompt_per_mtok = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True,
        help_text="USD per 1M prompt tokens the server reports as cached (usage.prompt_tokens_details.cached_tokens); "
                  "empty: cached tokens cost the prompt price.",
    )
    batch_api = models.BooleanField(
        default=False, help_text="Send this endpoint's requests as JSONL files through the provider's Batch API "
        "(/v1/files + /v1/batches, OpenAI's format) at its batch prices: answers arrive within the completion "
        "window (up to 24 h), not in seconds.",
    )
    price_batch_prompt_per_mtok = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True, help_text="Batch API; empty: the prompt price."
    )
    price_batch_completion_per_mtok = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True, help_text="Batch API; empty: the completion price."
    )
    price_batch_cached_prompt_per_mtok = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True,
        help_text="Batch API, cached prompt tokens; empty: the lower of the batch prompt and cached prices.",
    )
    batch_queue_tokens = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Batch API: prompt tokens the account may have in open batches of this "
        "model at once (OpenAI's batch queue limit of your tier); empty: no limit.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, editable=False
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="endpoint_name_version_unique"),
            models.UniqueConstraint(
                fields=["name"], condition=models.Q(is_current=True), name="endpoint_one_current_version"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version} ({self.model})"

    @classmethod
    def current(cls, name: str) -> Endpoint | None:
        return cls.objects.filter(name=name, is_current=True).first()

    @classmethod
    def offered_for(cls, use: str) -> models.QuerySet[Endpoint]:
        """The current endpoints a researcher may pick for `use` (Purpose.GENERATION or Purpose.JUDGE)."""
        return cls.objects.filter(is_current=True, purpose__in=[cls.Purpose.ANY, use])

    def prices(self, *, batch_api: bool) -> tuple[Decimal, Decimal, Decimal]:
        """(prompt, cached prompt, completion) USD per million tokens, through the Batch API or not. A price
        left empty falls back to the one it discounts, so an endpoint without discounts costs list price."""
        prompt, completion = self.price_prompt_per_mtok, self.price_completion_per_mtok
        cached = prompt if self.price_cached_prompt_per_mtok is None else self.price_cached_prompt_per_mtok
        if not batch_api:
            return prompt, cached, completion
        batch_prompt = prompt if self.price_batch_prompt_per_mtok is None else self.price_batch_prompt_per_mtok
        batch_cached = (min(batch_prompt, cached) if self.price_batch_cached_prompt_per_mtok is None
                        else self.price_batch_cached_prompt_per_mtok)
        batch_completion = (completion if self.price_batch_completion_per_mtok is None
                            else self.price_batch_completion_per_mtok)
        return batch_prompt, batch_cached, batch_completion

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, *,
             batch_api: bool | None = None) -> Decimal:
        """USD for this many tokens at the endpoint's prices (per million tokens), `cached_tokens` of the prompt
        tokens at the cached price, through the Batch API when the endpoint uses it (or as `batch_api` says):
        the one cost formula. What the call engine charges an experiment, what the saving shown is the
        difference of, and what an estimate adds up."""
        prompt, cached, completion = self.prices(batch_api=self.batch_api if batch_api is None else batch_api)
        cached_tokens = min(cached_tokens, prompt_tokens)
        return ((prompt_tokens - cached_tokens) * prompt + cached_tokens * cached
                + completion_tokens * completion) / Decimal(1_000_000)

    def clean(self) -> None:
        if self.api_key_env and self.api_key_env not in settings.ENDPOINT_KEY_VARIABLES:
            raise ValidationError({"api_key_env": undeclared_key_message(self.api_key_env)})

    def read_api_key(self) -> str:
        """The key from the endpoint's variable, which must be one the operator declared; the only place a
        request's credentials come from. Keyless servers (llama.cpp, vLLM without --api-key) get a dummy."""
        if not self.api_key_env:
            return "not-needed"
        if self.api_key_env not in settings.ENDPOINT_KEY_VARIABLES:
            raise UndeclaredKeyVariable(undeclared_key_message(self.api_key_env))
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise MissingApiKey(f"environment variable {self.api_key_env} (the API key) is not set on this worker")
        return key

    def same_server(self) -> models.QuerySet[Endpoint]:
        """Endpoint rows that reach the same server (e.g. the local model used to generate and to judge, or
        two versions of one endpoint): a concurrency limit is a property of the server, so they count
        against one another."""
        return Endpoint.objects.filter(base_url=self.base_url)

    @property
    def account(self) -> str:
        """What a provider meters rate limits by: the server and the key (named by its variable). Every version
        and name of an endpoint on the same account draws from one AccountPace."""
        return f"{self.base_url} {self.api_key_env}"


class AccountPace(models.Model):
    """The requests- and tokens-per-minute state of one provider account (Endpoint.account), shared by every
    worker process: the moment (Unix time) from which each limit's capacity is still unreserved. Processes
    reserve capacity from it in chunks of time and pace their own requests inside them (transcripts/engine/)."""

    account = models.CharField(max_length=700, unique=True)
    requests_free_at = models.FloatField(default=0)
    tokens_free_at = models.FloatField(default=0)

    def __str__(self) -> str:
        return self.account

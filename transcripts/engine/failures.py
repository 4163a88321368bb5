"""Which failures of a call are worth another attempt, and how long to wait before it."""

from __future__ import annotations

import email.utils
import json
import random
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from ..models import MissingApiKey, UndeclaredKeyVariable

ERROR_TEXT_LIMIT = 2000  # provider error bodies are stored truncated, and shown as text


@dataclass(frozen=True)
class Failure:
    kind: str
    retryable: bool
    message: str
    retry_after: float | None = None


class MalformedReply(Exception):
    """The server answered 200 with something that is not a completion."""


def retry_after(response) -> float | None:
    headers = getattr(response, "headers", None) or {}
    if headers.get("retry-after-ms"):
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, (when - timezone.now()).total_seconds()) if when else None


def classify(exc: Exception) -> Failure:
    """Which errors are worth another attempt. Context-length and other 4xx are the request's fault: terminal."""
    import openai

    message = str(exc)[:ERROR_TEXT_LIMIT]
    if isinstance(exc, openai.APITimeoutError):
        return Failure("timeout", True, message)
    if isinstance(exc, openai.APIConnectionError):
        return Failure("connection", True, message)
    if isinstance(exc, MalformedReply | openai.APIResponseValidationError | json.JSONDecodeError):
        return Failure("malformed_reply", True, message)
    if isinstance(exc, UndeclaredKeyVariable):
        return Failure("undeclared_key_variable", False, message)
    if isinstance(exc, MissingApiKey):
        return Failure("missing_api_key", False, message)
    if isinstance(exc, openai.APIStatusError):
        status, lowered = exc.status_code, message.lower()
        if status == 429:
            return Failure("rate_limited", True, message, retry_after(exc.response))
        if status >= 500 or status in (408, 409):
            return Failure("server_error", True, message, retry_after(exc.response))
        if 300 <= status < 400:
            return Failure("redirect_refused", False, f"the server redirected (HTTP {status}); not followed")
        if "context" in lowered and any(word in lowered for word in ("length", "window", "maximum", "exceed")):
            return Failure("context_length", False, message)
        if "content_policy" in lowered or "content_filter" in lowered or "content management policy" in lowered:
            return Failure("content_policy", False, message)
        return Failure(f"http_{status}", False, message)
    raise exc  # a bug of ours, not the endpoint's: logged by the driver; the lease brings the row back


def backoff(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter (half to full of the step), never sooner than Retry-After."""
    step = min(settings.GENERATION_BACKOFF_MAX_SECONDS, settings.GENERATION_BACKOFF_SECONDS * 2 ** (attempt - 1))
    delay = step * random.uniform(0.5, 1.0)
    return max(delay, retry_after or 0.0)


def first_choice(completion):
    """The first choice of a completion, or MalformedReply."""
    choices = getattr(completion, "choices", None)
    if not choices:
        raise MalformedReply(f"no choices in reply: {str(completion)[:300]!r}")
    return choices[0]

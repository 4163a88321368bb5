"""Free-text "more like this" is throttled per user: each new text is a request to the embedding endpoint (its
account's limits and cost are shared with every job), and the text is typed by the person searching, so one
user's script must not keep the embedder busy for everyone.

A text's vector is kept in the cache (`TEXT_VECTOR_SECONDS`), so paging through a search, exporting it or making
a queue of it embeds nothing again and costs no allowance; only a text not seen lately counts. Each user may
embed `DISCOVERY_TEXT_SEARCHES` texts per `DISCOVERY_TEXT_SEARCH_WINDOW` seconds; past that the page or API
call answers 429 with a Retry-After.

The transcript filter that asks for the vector is shared by pages, exports and the API, and does not see the
request. `TextSearchUserMiddleware` remembers the request being served (a context variable: one per thread), so
every HTTP path counts against its user without each view passing one, and a path added later cannot forget to;
outside a request (a management command) nothing is counted. The user is read when the vector is asked for,
so an API client authenticated by token (after the middleware ran) is counted too.
"""

from __future__ import annotations

import contextvars
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

TEXT_VECTOR_SECONDS = 3600

_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar("discovery_request", default=None)


class TooManyTextSearches(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"Too many searches by text: wait {retry_after} s.")
        self.retry_after = retry_after


def _who(request: HttpRequest) -> str:
    user = getattr(request, "user", None)
    return f"user:{user.pk}" if user is not None and user.is_authenticated else "anonymous"


def count_text_search() -> None:
    """Count one embedding of a new free text against the user of the request being served; raises
    TooManyTextSearches past the limit (nothing is sent to the embedder then)."""
    request = _request.get()
    if request is None:
        return
    window = settings.DISCOVERY_TEXT_SEARCH_WINDOW
    now = time.time()
    key = f"discovery:text-searches:{_who(request)}:{int(now // window)}"
    cache.add(key, 0, window + 5)
    try:
        used = cache.incr(key)
    except ValueError:  # evicted between add and incr: count from one again
        cache.set(key, 1, window + 5)
        used = 1
    if used > settings.DISCOVERY_TEXT_SEARCHES:
        raise TooManyTextSearches(retry_after=max(1, int(window - now % window)))


class TextSearchUserMiddleware:
    """Remembers the request for `count_text_search`, and answers TooManyTextSearches with a 429 page."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, TooManyTextSearches):
            return None
        if request.path.startswith("/api/"):  # the API's own form, as for its other errors
            response = JsonResponse({"detail": str(exception)}, status=429)
        else:
            response = render(request, "discovery/too_many_searches.html", {
                "retry_after": exception.retry_after, "limit": settings.DISCOVERY_TEXT_SEARCHES,
                "window": settings.DISCOVERY_TEXT_SEARCH_WINDOW}, status=429)
        response["Retry-After"] = str(exception.retry_after)
        return response

"""Every page and API endpoint needs a login: walk the whole URL configuration anonymously."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

# What must stay reachable without a login: the login page, the token endpoint, and the icon a browser asks
# for on the login page (a redirect to a static file, which is served before authentication anyway).
PUBLIC = {"login", "api-token", "favicon"}


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.name


def _concrete(route: str) -> str:
    """Turn a route or regex into a URL: every converter gets a plausible value."""
    route = re.sub(r"<(?:int:)?(\w+)>", "1", route)
    route = re.sub(r"<(?:slug|str|path):(\w+)>", "x", route)
    route = re.sub(r"<uuid:(\w+)>", "00000000-0000-0000-0000-000000000000", route)
    # Admin regex patterns.
    route = route.replace("^", "").replace("$", "").replace("\\Z", "")
    route = re.sub(r"\(\?P<\w+>[^)]*\)", "1", route)
    return "/" + route


def all_urls():
    seen = set()
    for route, name in _walk(get_resolver().url_patterns):
        url = _concrete(route)
        if name in PUBLIC or url in seen or "(" in url:
            continue
        seen.add(url)
        yield pytest.param(url, id=url)


def test_it_finds_the_app_urls():
    urls = {p.values[0] for p in all_urls()}
    assert "/" in urls and "/datasets/" in urls and "/admin/" in urls


@pytest.mark.django_db
@pytest.mark.parametrize("url", list(all_urls()))
@pytest.mark.parametrize("method", ["get", "post"])
def test_it_refuses_anonymous_users(client, url, method):
    response = getattr(client, method)(url)
    if response.status_code in (301, 302):
        location = response["Location"]
        assert "/login/" in location, f"{url} redirects to {location}, not the login page"
    else:
        assert response.status_code in (401, 403, 405), f"{method.upper()} {url} answered {response.status_code}"

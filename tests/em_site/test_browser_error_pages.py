"""404, 403 and 500 are styled pages with the site's navigation that say what was missing or refused, and
the favicon is there (real Chromium, DEBUG off as in production)."""

from __future__ import annotations

import pytest
from django.urls import path, reverse

import em_site.urls
from tests.conftest import logged_in_page, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def broken_view(request):
    raise RuntimeError("a bug")


urlpatterns = [*em_site.urls.urlpatterns, path("boom/", broken_view)]
handler404 = em_site.urls.handler404


def test_404_names_what_was_missing_with_navigation(chromium, live_server, alice):
    page = logged_in_page(chromium, live_server, alice)
    response = page.goto(f"{live_server.url}{reverse('experiment-results', args=[987654])}")
    assert response.status == 404
    assert page.locator("#error-page h1").inner_text() == "Not found"
    assert "No Experiment matches the given query." in page.locator("#error-page").inner_text()
    assert "/experiments/987654/results/" in page.locator("#error-page code").inner_text()
    assert page.locator("header.topbar nav a", has_text="Dashboard").count() == 1
    assert page.locator("#error-page a.button", has_text="Dashboard").get_attribute("href") == "/"
    # Styled: the site's stylesheet applies (a card with its border), not the bare default page.
    assert page.locator("#error-page").evaluate("e => getComputedStyle(e).borderTopStyle") == "solid"


def test_403_says_which_role_may_and_offers_the_auditors_queues(chromium, live_server):
    auditor = make_user("dora", "auditor")
    page = logged_in_page(chromium, live_server, auditor)
    response = page.goto(f"{live_server.url}{reverse('experiment-list')}")
    assert response.status == 403
    text = page.locator("#error-page").inner_text()
    assert "Not allowed" in text and "Signed in as dora" in text
    assert page.locator("#error-page a", has_text="Your annotation queues").count() == 1


@pytest.mark.urls(__name__)
def test_500_is_a_styled_page_with_a_way_back(chromium, live_server, alice, settings):
    settings.DEBUG = False
    page = logged_in_page(chromium, live_server, alice)
    response = page.goto(f"{live_server.url}/boom/")
    assert response.status == 500
    assert page.locator("#error-page h1").inner_text() == "Something went wrong on our side"
    assert "a bug" not in page.content()  # nothing of the exception leaks
    assert page.locator("#error-page a", has_text="Dashboard").count() == 1


def test_the_favicon_is_served(chromium, live_server, alice):
    page = logged_in_page(chromium, live_server, alice)
    page.goto(f"{live_server.url}/")
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert page.request.get(f"{live_server.url}{icon}").status == 200
    assert page.request.get(f"{live_server.url}/favicon.ico").status == 200  # redirected to the same icon



def test_the_404_page_shows_the_asked_path_as_text(client, alice):
    client.force_login(alice)
    response = client.get("/no-such-page/<script>alert(1)</script>/")
    assert response.status_code == 404
    html = response.content.decode()
    at = html.find("<script>alert(1)")
    assert at == -1, html[max(0, at - 400):at + 50]
    shown = html[html.index("You asked for <code>"):]
    assert shown[:shown.index("</code>")].endswith("/no-such-page/%3Cscript%3Ealert%281%29%3C/script%3E/"), shown[:200]

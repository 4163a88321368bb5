"""Password guessing: after the configured number of failures the login page, the admin login and the token
endpoint refuse the account (and the guessing address) for the lock-out period, even with the right password."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.utils import timezone

from tests.conftest import PASSWORD, make_user

ATTACKS = 20


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    # Each guess checks a password: the production hasher would make these tests take a minute.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _login_page(client, username: str, password: str, **headers):
    return client.post("/login/", {"username": username, "password": password}, **headers)


def _admin_login(client, username: str, password: str, **headers):
    return client.post("/admin/login/", {"username": username, "password": password}, **headers)


def _token(client, username: str, password: str, **headers):
    return client.post("/api/token/", {"username": username, "password": password}, **headers)


def _signed_in(client, response) -> bool:
    return response.status_code == 302 and "_auth_user_id" in client.session


def _got_token(client, response) -> bool:
    return response.status_code == 200 and "token" in response.json()


ENTRANCES = [
    pytest.param(_login_page, _signed_in, id="login"),
    pytest.param(_admin_login, _signed_in, id="admin-login"),
    pytest.param(_token, _got_token, id="api-token"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("attempt, succeeded", ENTRANCES)
def test_twenty_failed_logins_lock_the_account_even_for_the_right_password(client, attempt, succeeded):
    make_user("victim", "researcher", is_staff=True)
    answers = [attempt(client, "victim", f"guess-{n}").status_code for n in range(ATTACKS)]
    assert answers[-1] == 429, answers
    locked = attempt(client, "victim", PASSWORD)
    assert locked.status_code == 429
    assert "locked" in locked.content.decode().lower()
    assert not succeeded(client, locked)


@pytest.mark.django_db
@pytest.mark.parametrize("attempt, succeeded", ENTRANCES)
def test_the_right_password_works_again_after_the_lock_out_period(client, settings, attempt, succeeded):
    make_user("victim", "researcher", is_staff=True)
    for n in range(ATTACKS):
        attempt(client, "victim", f"guess-{n}")
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert succeeded(client, attempt(client, "victim", PASSWORD))


@pytest.mark.django_db
def test_one_address_guessing_many_accounts_is_locked_out(client):
    """Password spraying: one guess per account name still adds up per address."""
    make_user("victim", "researcher")
    for n in range(ATTACKS):
        _login_page(client, f"user-{n}", "Summer2026!")
    assert _login_page(client, "victim", PASSWORD).status_code == 429
    # The account itself was not attacked: its owner signs in from elsewhere.
    assert _signed_in(client, _login_page(client, "victim", PASSWORD, REMOTE_ADDR="10.0.0.7"))


@pytest.mark.django_db
def test_behind_the_proxy_the_client_address_comes_from_the_proxy_not_the_client(client, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    make_user("victim", "researcher")
    # Every request reaches us from the proxy (127.0.0.1); the attacker varies the X-Forwarded-For it sends,
    # the proxy appends the address it really sees.
    for n in range(ATTACKS):
        _login_page(client, f"user-{n}", "Summer2026!", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 203.0.113.9")
    assert _login_page(client, "victim", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 429
    # Another client behind the same proxy is not locked out with the attacker.
    assert _signed_in(client, _login_page(client, "victim", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.4"))

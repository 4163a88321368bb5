"""Password guessing: after the configured number of failures the login page, the admin login and the token
endpoint refuse the account from the guessing address for the lock-out period, even with the right password.
The lock cannot be reset by logging in as someone else, and cannot be turned against others: the account's
owner still signs in from another address, and the other accounts behind the guessing address still sign in."""

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
def test_behind_the_proxy_the_client_address_comes_from_the_proxy_not_the_client(client, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    make_user("victim", "researcher")
    # Every request reaches us from the proxy (127.0.0.1); the attacker varies the X-Forwarded-For it sends to
    # spread its guesses over many addresses, the proxy appends the address it really sees.
    for n in range(ATTACKS):
        _login_page(client, "victim", f"guess-{n}", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 203.0.113.9")
    assert _login_page(client, "victim", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 429
    # Another client behind the same proxy is not locked out with the attacker.
    assert _signed_in(client, _login_page(client, "victim", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.4"))


@pytest.mark.django_db
@pytest.mark.parametrize("attempt, succeeded", ENTRANCES)
def test_logging_in_as_yourself_between_guesses_does_not_reset_the_count_against_another_account(
    client, settings, attempt, succeeded
):
    """The reviewer's sequence: an auditor guesses root's password 9 times, logs in as themself, logs out, and
    repeats. A login clears only its own account's failures, so root's count keeps growing."""
    make_user("root", is_staff=True, is_superuser=True)
    make_user("eve", "auditor")
    answers = []
    for _round in range(5):
        answers += [attempt(client, "root", f"guess-{len(answers)}").status_code for _ in range(9)]
        assert _signed_in(client, _login_page(client, "eve", PASSWORD))
        client.post("/logout/")
    assert 429 in answers, f"{len(answers)} guesses at root's password, none refused: {answers}"
    assert answers.index(429) == settings.AXES_FAILURE_LIMIT - 1, answers
    locked = attempt(client, "root", PASSWORD)
    assert locked.status_code == 429
    assert not succeeded(client, locked)


@pytest.mark.django_db
@pytest.mark.parametrize("attempt, succeeded", ENTRANCES)
def test_a_stranger_locking_an_account_does_not_lock_its_owner_out_from_another_address(
    client, attempt, succeeded
):
    make_user("root", is_staff=True, is_superuser=True)
    for n in range(ATTACKS):
        _token(client, "root", f"guess-{n}", REMOTE_ADDR="203.0.113.66")
    # The stranger's address stays locked for root, whatever the entrance...
    assert attempt(client, "root", PASSWORD, REMOTE_ADDR="203.0.113.66").status_code == 429
    # ...and root signs in from its own.
    assert succeeded(client, attempt(client, "root", PASSWORD, REMOTE_ADDR="198.51.100.4"))


@pytest.mark.django_db
@pytest.mark.parametrize("attempt, succeeded", ENTRANCES)
def test_failures_from_one_address_do_not_lock_out_the_other_accounts_behind_it(client, attempt, succeeded):
    """A lab behind one NAT: a fuzzer's bad token requests (unknown names and a real one) from the shared
    address lock only the names it guessed."""
    make_user("alice", "researcher", is_staff=True)
    make_user("bob", "auditor")
    for n in range(ATTACKS):
        _token(client, f"user-{n}", "Summer2026!")
        _token(client, "bob", f"guess-{n}")
    assert _token(client, "bob", PASSWORD).status_code == 429
    assert succeeded(client, attempt(client, "alice", PASSWORD))


@pytest.mark.django_db
def test_failures_at_the_three_entrances_add_up(client, settings):
    """The admin login and the token endpoint count against the same limit as the login page."""
    make_user("victim", "researcher", is_staff=True)
    guessers = [_login_page, _admin_login, _token]
    for n in range(settings.AXES_FAILURE_LIMIT):
        guessers[n % 3](client, "victim", f"guess-{n}")
    for attempt in guessers:
        assert attempt(client, "victim", PASSWORD).status_code == 429

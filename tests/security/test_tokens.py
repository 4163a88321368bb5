"""API access: tokens expire and can be revoked (by their holder, by an admin, by a password change), and the
API's schema and docs are for researchers only: not for anonymous visitors, not for auditors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def _obtain(client, username: str) -> str:
    response = client.post("/api/token/", {"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.content
    return response.json()["token"]


def _with_token(client, token: str, path: str = "/api/experiments/"):
    return client.get(path, HTTP_AUTHORIZATION=f"Token {token}")


def test_a_fresh_token_works_and_says_when_it_expires(client, settings, alice):
    response = client.post("/api/token/", {"username": "alice", "password": PASSWORD})
    expires = response.json()["expires_at"]
    assert expires.startswith(str((timezone.now() + settings.API_TOKEN_TTL).date()))
    assert _with_token(client, response.json()["token"]).status_code == 200


def test_an_expired_token_is_refused_and_a_new_one_issued(client, settings, alice):
    token = _obtain(client, "alice")
    Token.objects.filter(key=token).update(created=timezone.now() - settings.API_TOKEN_TTL - timedelta(seconds=1))
    refused = _with_token(client, token)
    assert refused.status_code == 401
    assert "expired" in refused.json()["detail"]
    fresh = _obtain(client, "alice")
    assert fresh != token
    assert _with_token(client, fresh).status_code == 200


def test_asking_again_before_expiry_does_not_extend_the_token(client, alice):
    """Logging in again returns the same token: its lifetime counts from when it was first issued."""
    first = client.post("/api/token/", {"username": "alice", "password": PASSWORD}).json()
    again = client.post("/api/token/", {"username": "alice", "password": PASSWORD}).json()
    assert again == first


def test_a_token_its_holder_revoked_is_refused(client, alice):
    token = _obtain(client, "alice")
    assert client.delete("/api/token/", HTTP_AUTHORIZATION=f"Token {token}").status_code == 204
    assert _with_token(client, token).status_code == 401


def test_a_token_an_admin_revoked_is_refused(client, alice):
    token = _obtain(client, "alice")
    admin = make_user("root", is_staff=True, is_superuser=True)
    client.force_login(admin)
    page = f"/admin/authtoken/tokenproxy/{alice.pk}/delete/"
    assert client.get(page).status_code == 200
    assert client.post(page, {"post": "yes"}).status_code == 302
    client.logout()
    assert _with_token(client, token).status_code == 401


NEW_PASSWORD = "a-new-horse-battery"


def _set_password_and_save(client, user) -> None:
    user.set_password(NEW_PASSWORD)
    user.save()


def _admin_sets_it(client, user) -> None:
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    page = f"/admin/auth/user/{user.pk}/password/"
    response = client.post(page, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 302, response.content
    client.logout()


def _user_changes_their_own(client, user) -> None:
    client.force_login(user)
    response = client.post("/admin/password_change/", {
        "old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD,
    })
    assert response.status_code == 302, response.content
    client.logout()


@pytest.mark.parametrize("change_password", [_set_password_and_save, _admin_sets_it, _user_changes_their_own])
def test_a_password_change_revokes_the_token(client, alice, change_password):
    """Whoever learnt the old password and took a token with it loses the API when the password changes."""
    alice.is_staff = True  # the admin's own password change page is for staff
    alice.save()
    token = _obtain(client, "alice")
    assert _with_token(client, token).status_code == 200
    change_password(client, alice)
    assert _with_token(client, token).status_code == 401
    fresh = client.post("/api/token/", {"username": "alice", "password": NEW_PASSWORD}).json()["token"]
    assert _with_token(client, fresh).status_code == 200


def test_saving_a_user_without_changing_the_password_keeps_the_token(client, alice):
    token = _obtain(client, "alice")
    alice.refresh_from_db()
    alice.email = "alice@example.org"
    alice.save()
    client.force_login(alice)  # a login saves last_login
    client.logout()
    assert _with_token(client, token).status_code == 200


def test_revoking_needs_a_token_or_login(client):
    assert client.delete("/api/token/").status_code in (401, 403)


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_anonymous_visitors_get_no_schema_or_docs(client, path):
    response = client.get(path)
    assert response.status_code in (302, 401, 403)
    if response.status_code == 302:
        assert response["Location"].startswith("/login/")
    assert b"openapi" not in response.content and b"/api/transcripts/" not in response.content


def test_a_token_holder_and_a_signed_in_user_get_the_schema(client, alice):
    token = _obtain(client, "alice")
    assert b"/api/transcripts/" in _with_token(client, token, "/api/schema/").content
    client.force_login(alice)
    assert client.get("/api/docs/").status_code == 200


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_auditors_get_no_schema_or_docs(client, bob, path):
    """Auditors work only in the annotation workspace: the API the schema describes is not theirs."""
    by_token = _with_token(client, _obtain(client, "bob"), path)
    client.force_login(bob)
    signed_in = client.get(path)
    for response in (by_token, signed_in):
        assert response.status_code == 403
        assert b"openapi" not in response.content and b"/api/transcripts/" not in response.content

"""Login lock-out and API tokens that expire and can be revoked.

Failed logins are counted by django-axes (per account name from one client address, settings.py says why; in
the database, so every web process shares the count): the login page, the admin login and the token endpoint
all go through `django.contrib.auth.authenticate`, so all three are locked by the one count.

A token is DRF's `Token` (one per user). It is refused once older than `settings.API_TOKEN_TTL`; a user
revokes their own with DELETE /api/token/ (em_site/token_api.py), an admin revokes anyone's in the Django admin
(Auth Token › Tokens), and a password change revokes it (`revoke_tokens_on_password_change`, connected in
em_site/apps.py). The view lives apart because DRF imports this module while loading its own settings.
"""

from __future__ import annotations

from datetime import datetime

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed


class LockoutBackend(AxesStandaloneBackend):
    """Axes' lock-out check for logins that come from a request. A call without one (a management command
    checking a password) is not a login attempt from the network, so there is nothing to count or refuse."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def client_ip(request) -> str | None:
    """The address failed logins are counted under. Behind the TLS proxy (SECURE_PROXY_SSL_HEADER on) every
    connection comes from the proxy, which appends the client's address to X-Forwarded-For: the right-most
    entry is the one it wrote, anything left of it the client could have made up."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if settings.SECURE_PROXY_SSL_HEADER and forwarded:
        return forwarded.rsplit(",", 1)[-1].strip()
    return request.META.get("REMOTE_ADDR")


def token_expires_at(token: Token) -> datetime:
    return token.created + settings.API_TOKEN_TTL


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, refusing a token past its lifetime (and deleting it)."""

    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token_expires_at(token) <= timezone.now():
            token.delete()
            raise AuthenticationFailed("Token expired: obtain a new one with POST /api/token/.")
        return user, token


def note_password_change(sender, instance: User, update_fields=None, **kwargs) -> None:
    """pre_save of User: compare the hash about to be saved with the stored one, whichever way it was set
    (`set_password`, the password change page, the admin, a hash assigned directly)."""
    instance._em_password_changed = (
        instance.pk is not None
        and (update_fields is None or "password" in update_fields)
        and User.objects.filter(pk=instance.pk).exclude(password=instance.password).exists()
    )


def revoke_tokens_on_password_change(sender, instance: User, **kwargs) -> None:
    """post_save of User: a changed password revokes the user's token, so whoever had the old password (and
    took a token with it) loses the API too. After the save, not before: a token asked for in between must
    already need the new password."""
    if instance._em_password_changed:
        Token.objects.filter(user=instance).delete()

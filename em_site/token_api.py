"""POST /api/token/ issues a token for a username and password, DELETE revokes the caller's (em_site/auth.py)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import Throttled, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from em_site.auth import token_expires_at

_TOKEN_REPLY = inline_serializer("Token", {"token": serializers.CharField(), "expires_at": serializers.DateTimeField()})


class TokenRequest(AuthTokenSerializer):
    """A username no account can have is refused before it reaches authenticate(): the lock-out records every
    failed name in a 255-character column, and a longer one failed there with a 500."""

    username = serializers.CharField(label="Username", write_only=True,
                                     max_length=User._meta.get_field("username").max_length)


class TokenView(ObtainAuthToken):
    """POST username and password for your token (a new one once the old has expired); DELETE revokes it."""

    serializer_class = TokenRequest
    # ObtainAuthToken names DRF's own parsers; anyone may post here, so it takes the bounded ones of the settings.
    parser_classes = api_settings.DEFAULT_PARSER_CLASSES

    def get_permissions(self):
        # Anyone may ask for a token with a password; only its holder may revoke it.
        return [IsAuthenticated()] if self.request.method == "DELETE" else []

    @extend_schema(request=TokenRequest, responses={200: _TOKEN_REPLY})
    def post(self, request: Request, *args, **kwargs) -> Response:
        serializer = self.get_serializer(data=request.data)
        if not serializer.is_valid():
            if getattr(request, "axes_locked_out", False):
                # Axes flags the DRF request it was given; say "locked" rather than "wrong password".
                cooloff = settings.AXES_COOLOFF_TIME.total_seconds()
                raise Throttled(wait=cooloff, detail=str(settings.AXES_COOLOFF_MESSAGE))
            raise ValidationError(serializer.errors)
        user = serializer.validated_data["user"]
        with transaction.atomic():
            token = Token.objects.select_for_update().filter(user=user).first()
            if token is not None and token_expires_at(token) <= timezone.now():
                token.delete()
                token = None
            if token is None:
                token = Token.objects.create(user=user)
        return Response({"token": token.key, "expires_at": token_expires_at(token)})

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, *args, **kwargs) -> Response:
        Token.objects.filter(user=request.user).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

"""The API's way in and out: a token endpoint under the login lockout that replaces an
expired token, a logout that revokes the token, and the documentation page."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework import serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from diagnosis import access
from diagnosis.authentication import ExpiringTokenAuthentication


class TokenLoginApi(ObtainAuthToken):
    """POST username and password, get {"token": ...} for `Authorization: Token <token>`.
    The token lasts CHESTNET_API_TOKEN_TTL_H hours; asking after that issues a new one.
    Repeated failures lock the username out from that address (429, Retry-After)."""

    # Password guessing across many usernames from one address meets the anonymous rate.
    throttle_classes = [AnonRateThrottle]

    @extend_schema(
        request=AuthTokenSerializer,
        responses={
            200: inline_serializer("IssuedToken", {"token": serializers.CharField()}),
            429: OpenApiResponse(description="Locked out or throttled: see Retry-After."),
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        serializer = self.get_serializer(data=request.data)
        if not serializer.is_valid():
            # django-axes marks the request it refused (or just locked) while authenticating.
            if getattr(request, "axes_locked_out", False):
                credentials = getattr(request, "axes_credentials", None)
                return access.lockout_response(request, None, credentials)
            raise ValidationError(serializer.errors)
        user = serializer.validated_data["user"]
        token = access.token_issue(user=user)
        # As a form login does: audited, and the lockout's failure count is reset.
        user_logged_in.send(sender=type(user), request=request, user=user)
        return Response({"token": token.key})


class TokenLogoutApi(APIView):
    """POST with `Authorization: Token <token>`: the token stops working at once. (A web
    session logs out at /accounts/logout/, which revokes the token too.)"""

    authentication_classes = [ExpiringTokenAuthentication]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        user_logged_out.send(sender=type(request.user), request=request, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiDocsView(SpectacularSwaggerView):
    """Swagger UI over the schema, served from local static files (drf-spectacular-sidecar);
    signed-in users only."""

    url_name = "api_schema"
    template_name = "diagnosis/api_docs.html"

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().get(request, *args, **kwargs)
        response.data["token_ttl_h"] = settings.CHESTNET_API_TOKEN_TTL_H
        return response

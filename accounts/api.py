"""The API's way in and out: a token endpoint under the login lockout that issues each
client a token of its own, logouts that revoke the request's token (or all the user's), and
the documentation page."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import lockout, services, tokens
from accounts.authentication import ApiTokenAuthentication
from chestnet_site.throttling import AnonRateThrottle

# A client that does not name itself is named by the first characters of its User-Agent.
USER_AGENT_SHOWN = 60


class TokenLoginSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)
    client = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="What will use the token (a script, an integration), as the token list "
        "shows it; by default the start of the User-Agent.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        request = self.context["request"]
        # django-axes needs the request: it checks the lockout and counts the failure.
        user = authenticate(request=request, username=attrs["username"], password=attrs["password"])
        if user is None:
            raise ValidationError(
                "Unable to log in with provided credentials.", code="authorization"
            )
        return {**attrs, "user": user}


class TokenLoginApi(APIView):
    """POST username and password (and optionally `client`), get a new token for
    `Authorization: Token <token>`, shown this once. Each call issues another token, so each
    client logs in for its own; a token lasts CHESTNET_API_TOKEN_TTL_H hours. Repeated
    failures lock the username out from that address (429, Retry-After)."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    # Password guessing across many usernames from one address meets the anonymous rate.
    throttle_classes = [AnonRateThrottle]

    @extend_schema(
        request=TokenLoginSerializer,
        responses={
            200: inline_serializer(
                "IssuedToken",
                {
                    "token": serializers.CharField(),
                    "expiry": serializers.DateTimeField(),
                    "client": serializers.CharField(),
                },
            ),
            403: OpenApiResponse(
                description="The account holds CHESTNET_API_TOKENS_PER_USER live tokens."
            ),
            429: OpenApiResponse(description="Locked out or throttled: see Retry-After."),
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        serializer = TokenLoginSerializer(data=request.data, context={"request": request})
        if not serializer.is_valid():
            # django-axes marks the request it refused (or just locked) while authenticating.
            if getattr(request, "axes_locked_out", False):
                credentials = getattr(request, "axes_credentials", None)
                return lockout.lockout_response(request, None, credentials)
            raise ValidationError(serializer.errors)
        data = serializer.validated_data
        client = data.get("client") or request.headers.get("User-Agent", "")[:USER_AGENT_SHOWN]
        try:
            issued = tokens.api_login(request=request, user=data["user"], client=client)
        except services.TokenLimitReached as refused:
            raise PermissionDenied(str(refused)) from None
        token = issued.token
        expiry = serializers.DateTimeField().to_representation(token.expiry)
        return Response({"token": issued.secret, "expiry": expiry, "client": token.client})


class TokenLogoutApi(APIView):
    """POST with `Authorization: Token <token>`: that token stops working at once; the
    user's other tokens (other clients) keep working. Logging out of the site revokes none."""

    authentication_classes = [ApiTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        tokens.api_logout(request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenLogoutAllApi(APIView):
    """POST with `Authorization: Token <token>`: every token of the user stops working, on
    every client (a lost laptop, a leaked script)."""

    authentication_classes = [ApiTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer("RevokedTokens", {"revoked": serializers.IntegerField()})
        },
    )
    def post(self, request: Request) -> Response:
        return Response({"revoked": tokens.api_logout(request=request, everything=True)})


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

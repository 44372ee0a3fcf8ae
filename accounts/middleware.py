"""The idle timeout of web sessions: it counts from the person's last action."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class SessionActivityMiddleware:
    """The idle timeout (SESSION_COOKIE_AGE) counts from the person's last action: a page
    they open or a form they send renews the session; the page's own background requests
    (the case page's poll, progress polls: `fetch`, or `?poll=1`) do not, so a screen left
    open on a case still signs out. Listed after AuthenticationMiddleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and _is_activity(request):
            request.session.modified = True  # SessionMiddleware saves it with a new expiry
        return response


def _is_activity(request: HttpRequest) -> bool:
    if request.method not in ("GET", "HEAD"):
        return True
    if request.GET.get("poll") == "1":
        return False
    # Browsers mark what a script fetches; requests without the header count as activity.
    return request.headers.get("Sec-Fetch-Mode", "navigate") == "navigate"

"""How the site answers when something fails: JSON for programs (the REST API, DICOMweb),
pages for browsers; a service that is down or full is a 503 with a sentence, never a 500.
The middleware here, and the answers it shares with the error views and the API's
exception handler."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from chestnet_site import faults

logger = logging.getLogger(__name__)
# chestnet_site.urls mounts the API here; its refusals are JSON, the site's are pages.
API_PREFIX = "/api/"


def is_api_request(request: HttpRequest) -> bool:
    """A request from a program (the REST API or DICOMweb), answered in JSON, not HTML."""
    return request.path.startswith((API_PREFIX, "/dicomweb/"))


# --- services that are down -----------------------------------------------------------------


UNAVAILABLE_MESSAGE = (
    "ChestNet cannot reach its database or image store just now; nothing was saved. "
    "Try again in a minute; if it persists, contact support."
)
FULL_MESSAGE = (
    "ChestNet's image store is full; nothing was saved. Try again later; if it persists, "
    "contact support."
)


def unavailable_message(exception: BaseException) -> str | None:
    """The sentence for a fault of a service the request needed (`chestnet_site.faults.
    unavailable`: a database or object store that is down, a disk or store that is full),
    answered with 503, never a 500 or a traceback: nothing was half saved (the transaction
    was rolled back, the files written for it deleted). None for any other exception. The
    log names the fault, never the request's data (nor a file's path)."""
    if not faults.unavailable(exception):
        return None
    full = faults.storage_full(exception)
    logger.error(
        "Service unavailable: %s%s", type(exception).__name__, " (storage full)" if full else ""
    )
    return FULL_MESSAGE if full else UNAVAILABLE_MESSAGE


def unavailable_response(request: HttpRequest, exception: BaseException) -> HttpResponse | None:
    """`unavailable_message`'s 503: JSON for programs, a page for browsers."""
    message = unavailable_message(exception)
    if message is None:
        return None
    if is_api_request(request):
        response: HttpResponse = JsonResponse({"detail": message}, status=503)
    else:
        response = HttpResponse(f"<h1>Service unavailable</h1><p>{message}</p>", status=503)
    response["Retry-After"] = "60"
    return response


class UnavailableMiddleware:
    """A database or object store that is down, or a disk or store that is full, is a 503
    with a sentence, not a 500 (`unavailable_response`). The API's views answer through
    `diagnosis.api.exception_handler`, with the same answer."""

    MESSAGE = UNAVAILABLE_MESSAGE

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return unavailable_response(request, exception)


# --- programs never get an HTML error page --------------------------------------------------


INTERNAL_ERROR_MESSAGE = (
    "An internal error occurred; it has been logged. Try again, or contact support."
)


class ApiErrorsMiddleware:
    """A program (the API, DICOMweb) never gets an HTML error page: with DEBUG on (`make
    run`) Django answers an unknown URL or an error outside the API's own views with its
    debug page, HTML showing code, settings and paths. Such an answer becomes JSON with a
    `detail` sentence and the same status; the traceback stays in the log."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        html = response.get("Content-Type", "").startswith("text/html")
        if response.status_code < 400 or not html or not is_api_request(request):
            return response
        if response.status_code >= 500:
            detail = INTERNAL_ERROR_MESSAGE
        else:
            detail = "Not found." if response.status_code == 404 else response.reason_phrase
        answer = JsonResponse({"detail": detail}, status=response.status_code)
        for header in ("Retry-After", "Allow", "WWW-Authenticate"):
            if header in response:
                answer[header] = response[header]
        return answer

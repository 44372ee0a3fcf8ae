"""The HTTP response for a stored file, shared by the pages and the API: never cached, an
original as an attachment under its download name, the rest inline without one (the
storage's random name must not become the file's name on a workstation)."""

from __future__ import annotations

from django.http import FileResponse

from diagnosis.services import StoredFile


def file_response(stored: StoredFile) -> FileResponse:
    response = FileResponse(
        stored.handle,
        content_type=stored.content_type,
        as_attachment=bool(stored.download_name),
        filename=stored.download_name,
    )
    if not stored.download_name:
        # FileResponse names inline files after the handle: "<random>.bin" or ".jpg".
        del response["Content-Disposition"]
    response["Cache-Control"] = "private, no-store"
    return response

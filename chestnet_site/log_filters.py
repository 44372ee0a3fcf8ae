"""Filters of the site's log (settings.LOGGING)."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied


class RefusalInOneLine(logging.Filter):
    """A permission denial is an answer, not a fault: Django logs it with the exception's
    traceback. This keeps one line, ending with the refusal's sentence (no patient data:
    the sentences name roles)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exception = record.exc_info[1] if record.exc_info else None
        if isinstance(exception, PermissionDenied):
            record.exc_info = record.exc_text = None
            reason = str(exception)
            if reason:
                args = record.args if isinstance(record.args, tuple) else (record.args,)
                record.msg, record.args = f"{record.msg} (%s)", (*args, reason)
        return True

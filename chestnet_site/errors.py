"""The one exception every app's services raise when a rule refuses an action."""

from __future__ import annotations


class ServiceError(Exception):
    """A rule refused the action; str() is safe to show the user who asked."""

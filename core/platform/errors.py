"""Errors that carry a message meant for the user (German, no secrets), per input field."""

from __future__ import annotations


class UserFacingError(Exception):
    """Base for errors whose message may be shown in the UI as is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationFailed(UserFacingError):
    """Input was rejected; nothing was changed. `field_errors` maps field names to messages."""

    def __init__(self, field_errors: dict[str, str]) -> None:
        super().__init__(" ".join(field_errors.values()))
        self.field_errors = field_errors


class NotFound(UserFacingError):
    pass


class Conflict(UserFacingError):
    """The change collides with the current state (a concurrent edit, a duplicate)."""

"""The API's domain errors. Every API error has the shape {"error": {"type", "code", "message"}}: the project's
exception handler (agencyhub.exceptions) renders ApiError and DRF's own exceptions that way."""

from rest_framework import exceptions
from rest_framework.exceptions import NotFound

from conversations.models import REFUSAL_CODES
from conversations.services import ReplyFailed


class ApiError(exceptions.APIException):
    """A domain error with an explicit type/code, raised by services and mapped here."""

    def __init__(self, *, status_code: int, type: str, code: str, message: str, headers: dict | None = None):
        self.status_code = status_code
        self.error_type = type
        self.error_code = code
        self.headers = headers or {}
        super().__init__(detail=message, code=code)


_TYPES = {400: "invalid_request_error", 429: "rate_limit_error", 502: "provider_error", 503: "provider_unavailable"}


def reply_failed_error(failed: ReplyFailed) -> ApiError:
    headers = {"Retry-After": str(failed.retry_after or 5)} if failed.status in (429, 503) else None
    return ApiError(status_code=failed.status, type=_TYPES.get(failed.status, "api_error"), code=failed.code, message=str(failed), headers=headers)


def stored_failure_status(reply) -> int:
    """The status a replayed failed reply answers with: 400 if the provider refused the request itself, else 502."""
    return 400 if reply.error_code in REFUSAL_CODES.values() else 502


def not_found(what: str) -> NotFound:
    return NotFound(f"{what} not found")

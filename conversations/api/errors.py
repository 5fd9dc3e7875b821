"""The API's domain errors. Every API error has the shape {"error": {"type", "code", "message"}}: the project's
exception handler (agencyhub.exceptions) renders ApiError and DRF's own exceptions that way."""

import time

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


# 404 here is only `model_not_found` (a named model the client cannot use): OpenAI types it invalid_request_error.
_TYPES = {400: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limit_error", 502: "provider_error", 503: "provider_unavailable"}


def reply_failed_error(failed: ReplyFailed) -> ApiError:
    headers = {"Retry-After": str(failed.retry_after or 5)} if failed.status in (429, 503) else None
    return ApiError(status_code=failed.status, type=_TYPES.get(failed.status, "api_error"), code=failed.code, message=str(failed), headers=headers)


def stored_failure(reply) -> ReplyFailed:
    """What a retry (same Idempotency-Key) of a request whose reply failed answers: the first answer, kept in the
    reply's decision by the chat engine (status, message, when to retry); for older replies, 400 if the provider
    refused the request itself, else 502."""
    answer = (reply.route_decision or {}).get("answer") or {}
    status = answer.get("status") or (400 if reply.error_code in REFUSAL_CODES.values() else 502)
    retry_after = max(1, answer["retry_at"] - int(time.time())) if answer.get("retry_at") else None
    return ReplyFailed(reply, status, reply.error_code or "providers_failed", answer.get("message") or reply.error_detail,
                       retry_after=retry_after)


def not_found(what: str) -> NotFound:
    return NotFound(f"{what} not found")

"""One exception handler: every API error has the shape {"error": {"type", "code", "message"}}."""

import logging
from typing import Any

from django.db import InterfaceError, OperationalError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from conversations.api.errors import ApiError
from conversations.services import IdempotencyKeyReused

log = logging.getLogger(__name__)


_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


def _flatten(detail: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(field, message) for every error in a DRF error detail; field is "" for errors about the whole body."""
    if isinstance(detail, dict):
        out: list[tuple[str, str]] = []
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            out += _flatten(value, f"{prefix}.{name}" if prefix and name else (name or prefix))
        return out
    if isinstance(detail, list):
        return [m for item in detail for m in _flatten(item, prefix)]
    return [(prefix, str(detail))]


def error_body(type: str, code: str, message: str, param: str | None = None) -> dict:
    """The error shape. `param`, as OpenAI names it, is the field a validation error is about (the SDKs' `e.param`)."""
    body = {"type": type, "code": code, "message": message}
    if param:
        body["param"] = param
    return {"error": body}


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApiError):
        return Response(error_body(exc.error_type, exc.error_code, str(exc.detail)), status=exc.status_code, headers=exc.headers)
    if isinstance(exc, IdempotencyKeyReused):
        return Response(error_body("invalid_request_error", "idempotency_key_reused", str(exc)), status=422)
    if isinstance(exc, (OperationalError, InterfaceError)):
        # PostgreSQL unreachable or a connection lost: a condition to retry, not a bug. The failed statement stored
        # nothing (each write is one statement); a retry with the same Idempotency-Key returns what was stored, and a
        # reply left unfinished is taken over once its lease (REPLY_LEASE_SECONDS) runs out.
        log.error("database unavailable during an API request", exc_info=exc)
        return Response(error_body("api_error", "service_unavailable", "the service is briefly unavailable; retry shortly"),
                        status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "1"})
    response = exception_handler(exc, context)
    if response is None:
        return None
    code, param = getattr(exc, "default_code", "error"), None
    if isinstance(exc, exceptions.ValidationError):
        code = "invalid_field"
        errors = _flatten(exc.detail)
        message = "; ".join(f"{field}: {text}" if field else text for field, text in errors)
        param = next((field for field, _ in errors if field), None)
    elif isinstance(exc, exceptions.ParseError):
        code = "malformed_body"
        message = str(exc.detail)
    else:
        message = str(exc.detail) if hasattr(exc, "detail") else str(exc)
    if isinstance(exc, exceptions.Throttled):
        code = "rate_limited"
        scope = getattr(context.get("view"), "throttle_scope", None)
        message = f"too many requests per minute{f' ({scope})' if scope else ''}; retry after {exc.wait:.0f} s" if exc.wait else "too many requests"
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        response.status_code = status.HTTP_401_UNAUTHORIZED
        code = "invalid_api_key" if isinstance(exc, exceptions.AuthenticationFailed) else "missing_api_key"
    response.data = error_body(_TYPES.get(response.status_code, "api_error"), code, message, param)
    return response

"""Map SDK / transport exceptions to ProviderError, once, at the adapter edge.

Both SDKs raise their own exception trees, but some failures escape unwrapped (see PROVIDER-NOTES.md):
a 200 with an invalid body is a plain json.JSONDecodeError, and a connection dropped mid-stream can
leave the Anthropic SDK as httpx2's RemoteProtocolError.
"""

from __future__ import annotations

import json
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from typing import Any

import anthropic
import httpx2
import openai

from providers.errors import ErrorKind, ProviderError

_STATUS_KINDS = {
    401: ErrorKind.AUTHENTICATION,
    403: ErrorKind.PERMISSION,
    404: ErrorKind.NOT_FOUND,
    402: ErrorKind.INSUFFICIENT_QUOTA,
    408: ErrorKind.TIMEOUT,
    409: ErrorKind.SERVER_ERROR,
    413: ErrorKind.BAD_REQUEST,
    429: ErrorKind.RATE_LIMITED,
    503: ErrorKind.OVERLOADED,
    529: ErrorKind.OVERLOADED,
}

_ANTHROPIC_ERROR_TYPES = {
    "overloaded_error": ErrorKind.OVERLOADED,
    "rate_limit_error": ErrorKind.RATE_LIMITED,
    "api_error": ErrorKind.SERVER_ERROR,
    "authentication_error": ErrorKind.AUTHENTICATION,
    "permission_error": ErrorKind.PERMISSION,
    "not_found_error": ErrorKind.NOT_FOUND,
    "request_too_large": ErrorKind.BAD_REQUEST,
    "invalid_request_error": ErrorKind.BAD_REQUEST,
    "timeout_error": ErrorKind.TIMEOUT,
}


def retry_after_seconds(headers: Any) -> float | None:
    """`retry-after-ms`, else `retry-after` in seconds or as an HTTP date."""
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _body_error(body: Any) -> dict:
    if isinstance(body, dict):
        inner = body.get("error", body)
        return inner if isinstance(inner, dict) else {}
    return {}


_CONTEXT_TOO_LONG = (
    "context_length_exceeded", "prompt is too long", "context window", "maximum context length",
    "exceed context limit",  # Anthropic: "input length and `max_tokens` exceed context limit: 190000 + 64000 > 200000"
)


def _refine_400(message: str, code: str) -> ErrorKind:
    text = f"{message} {code}".lower()
    if any(phrase in text for phrase in _CONTEXT_TOO_LONG):
        return ErrorKind.CONTEXT_TOO_LONG
    if "content_filter" in text or "content management policy" in text or "content_policy" in text:
        return ErrorKind.CONTENT_FILTERED
    if "credit balance" in text or "insufficient_quota" in text:
        return ErrorKind.INSUFFICIENT_QUOTA
    return ErrorKind.BAD_REQUEST


def _moderated(err: dict) -> bool:
    """OpenRouter's moderation refusal ("your chosen model requires moderation and your input was flagged"): a 403
    whose metadata names the reasons or the flagged input. The request was refused, not the key."""
    metadata = err.get("metadata")
    return isinstance(metadata, dict) and ("reasons" in metadata or "flagged_input" in metadata)


def _from_status(status: int, message: str, code: str) -> ErrorKind:
    if status == 400 or status == 422:
        return _refine_400(message, code)
    if status == 429 and code == "insufficient_quota":
        return ErrorKind.INSUFFICIENT_QUOTA
    if status in _STATUS_KINDS:
        return _STATUS_KINDS[status]
    if status >= 500:
        return ErrorKind.SERVER_ERROR
    return ErrorKind.BAD_REQUEST


def _transport(exc: BaseException) -> ProviderError | None:
    if isinstance(exc, (httpx2.TimeoutException, TimeoutError)):
        return ProviderError(ErrorKind.TIMEOUT, f"timed out: {type(exc).__name__}")
    if isinstance(exc, (httpx2.TransportError, ConnectionError)):
        return ProviderError(ErrorKind.CONNECTION, f"connection failed: {type(exc).__name__}: {exc}")
    if isinstance(exc, json.JSONDecodeError):
        return ProviderError(ErrorKind.INVALID_RESPONSE, f"the provider sent a body that is not JSON: {exc.msg}")
    return None


def classify_anthropic(exc: BaseException) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderError(ErrorKind.TIMEOUT, "the request timed out")
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderError(ErrorKind.CONNECTION, f"connection failed: {exc.__cause__ or exc}")
    if isinstance(exc, anthropic.APIStatusError):
        err = _body_error(exc.body)
        err_type = str(err.get("type") or getattr(exc, "type", "") or "")
        message = str(err.get("message") or exc.message)
        request_id = exc.response.headers.get("request-id", "") if exc.response is not None else ""
        if exc.status_code == 200:  # an `error` event mid-stream
            kind = _ANTHROPIC_ERROR_TYPES.get(err_type, ErrorKind.SERVER_ERROR)
            if kind == ErrorKind.BAD_REQUEST:
                kind = _refine_400(message, err_type)
        else:
            kind = _from_status(exc.status_code, message, err_type)
        return ProviderError(
            kind, message, status=exc.status_code, request_id=request_id,
            retry_after=retry_after_seconds(exc.response.headers) if exc.response is not None else None,
        )
    transport = _transport(exc)
    if transport:
        return transport
    if isinstance(exc, anthropic.AnthropicError):
        return ProviderError(ErrorKind.SERVER_ERROR, f"{type(exc).__name__}: {exc}")
    raise exc


def classify_openai(exc: BaseException) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(ErrorKind.TIMEOUT, "the request timed out")
    if isinstance(exc, openai.APIConnectionError):
        inner = exc.__cause__
        if isinstance(inner, httpx2.TimeoutException):
            return ProviderError(ErrorKind.TIMEOUT, "the request timed out")
        return ProviderError(ErrorKind.CONNECTION, f"connection failed: {inner or exc}")
    if isinstance(exc, openai.APIStatusError):
        err = _body_error(exc.body)
        code = str(err.get("code") or getattr(exc, "code", "") or "")
        message = str(err.get("message") or exc.message)
        headers = exc.response.headers
        kind = ErrorKind.CONTENT_FILTERED if exc.status_code == 403 and _moderated(err) else _from_status(exc.status_code, message, code)
        return ProviderError(
            kind, message, status=exc.status_code,
            request_id=headers.get("x-request-id", "") or headers.get("x-generation-id", ""),
            retry_after=retry_after_seconds(headers),
        )
    if isinstance(exc, openai.APIError):
        # An error delivered inside a stream: no HTTP status; OpenRouter puts the status in `code`.
        return classify_accepted_error(_body_error(exc.body), fallback_message=exc.message)
    transport = _transport(exc)
    if transport:
        return transport
    if isinstance(exc, openai.OpenAIError):
        return ProviderError(ErrorKind.SERVER_ERROR, f"{type(exc).__name__}: {exc}")
    raise exc


def classify_accepted_error(err: dict, *, fallback_message: str = "", request_id: str = "", retry_after: float | None = None) -> ProviderError:
    """An error the provider reported after it accepted the request: an OpenAI-format error event mid-stream, or
    OpenRouter's HTTP 200 whose body is `{"error": {"code": 429, "message": ..., "metadata": ...}}`.

    A numeric `code` reads like an HTTP status (429 rate limited, 402 out of credits, 5xx server error), but the
    key was accepted: a 401/403 here never disables it. OpenRouter's only such 403 is its moderation refusal."""
    code = err.get("code")
    message = str(err.get("message") or fallback_message or "the provider reported an error")
    if isinstance(code, int) or (isinstance(code, str) and code.isdigit()):
        status = int(code)
        kind = ErrorKind.CONTENT_FILTERED if status == 403 or _moderated(err) else _from_status(status, message, "")
        if kind == ErrorKind.AUTHENTICATION:
            kind = ErrorKind.SERVER_ERROR
    elif code in ("context_length_exceeded", "content_filter"):
        kind = _refine_400(message, str(code))
    else:
        kind = ErrorKind.SERVER_ERROR
    return ProviderError(kind, message, request_id=request_id, retry_after=retry_after)

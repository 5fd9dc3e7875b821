from rest_framework.exceptions import NotFound

from agencyhub.exceptions import ApiError
from conversations.services import ReplyFailed

_TYPES = {400: "invalid_request_error", 429: "rate_limit_error", 502: "provider_error", 503: "provider_unavailable"}


def reply_failed_error(failed: ReplyFailed) -> ApiError:
    headers = {"Retry-After": str(failed.retry_after or 5)} if failed.status in (429, 503) else None
    return ApiError(status_code=failed.status, type=_TYPES.get(failed.status, "api_error"), code=failed.code, message=str(failed), headers=headers)


def not_found(what: str) -> NotFound:
    return NotFound(f"{what} not found")

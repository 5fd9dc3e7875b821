"""Browser calls (CORS): an assistant lists the web origins allowed to call it."""

from rest_framework.request import Request

from conversations.api.errors import ApiError
from conversations.models import Assistant


def check_origin(request: Request, assistant: Assistant) -> str | None:
    """The origin to echo in Access-Control-Allow-Origin, or None for server-to-server calls."""
    origin = request.headers.get("Origin")
    if not origin:
        return None
    if origin in (assistant.allowed_origins or []) or "*" in (assistant.allowed_origins or []):
        return origin
    raise ApiError(status_code=403, type="permission_error", code="origin_not_allowed",
                   message=f"origin {origin} is not allowed for assistant {assistant.slug!r}")


def allow(response, origin: str | None):
    if origin:
        response["Access-Control-Allow-Origin"] = origin
        response["Vary"] = "Origin"
    return response

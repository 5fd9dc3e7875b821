"""Browser calls (CORS): an assistant lists the web origins allowed to call it.

A preflight (OPTIONS with Access-Control-Request-Method) carries no API key, so it cannot know the tenant or the
assistant: CorsMiddleware answers every preflight to the client API with 204 and lets the browser send the actual
request. The origin is enforced on that request, by `check_origin`, once the view knows the assistant it acts on
(403 `origin_not_allowed`, before anything is stored or any provider is called). The middleware then puts the CORS
headers on whatever answers it, errors and streams included.
"""

import re

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers
from rest_framework.request import Request

from conversations.api.errors import ApiError
from conversations.models import Assistant
from conversations.web_origins import origin_allowed

API_PREFIXES = ("/api/v1/", "/v1/")
ALLOW_METHODS = "GET, POST, OPTIONS"
# What our clients send, and what the OpenAI SDKs may. The JS SDK also sends X-Stainless-* headers whose set changes
# between versions, so a preflight is granted whatever headers it names as well: granting a header grants nothing,
# the key and the origin are checked on the actual request.
ALLOW_HEADERS = ("Authorization", "Content-Type", "Accept", "Idempotency-Key", "X-Conversation-Id",
                 "OpenAI-Organization", "OpenAI-Project", "OpenAI-Beta")
EXPOSE_HEADERS = ("Retry-After", "Location", "X-AgencyHub-Provider", "X-AgencyHub-Model", "X-AgencyHub-Route-Reason",
                  "X-AgencyHub-Cost", "X-AgencyHub-Conversation-Id", "X-AgencyHub-Message-Id")
MAX_AGE = 7200  # seconds; Chromium's ceiling. A preflight's answer does not depend on the tenant, so it may be cached.
MAX_REQUESTED_HEADERS = 50
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")

# Set on the Django request by check_origin, read by CorsMiddleware.
_ALLOWED = "agencyhub_cors_allowed"
_REFUSED = "agencyhub_cors_refused"


def check_origin(request: Request, assistant: Assistant) -> None:
    """Mark the request's Origin allowed (CorsMiddleware then adds the CORS headers to whatever answers it), or raise
    403 `origin_not_allowed` if the assistant does not list it. No Origin header (server to server): nothing to do."""
    origin = request.headers.get("Origin")
    if not origin:
        return
    http_request = getattr(request, "_request", request)  # the HttpRequest under DRF's Request: what the middleware sees
    if origin_allowed(origin, assistant.allowed_origins):
        setattr(http_request, _ALLOWED, True)
        return
    setattr(http_request, _REFUSED, True)
    raise ApiError(status_code=403, type="permission_error", code="origin_not_allowed",
                   message=f"origin {origin} is not allowed for assistant {assistant.slug!r}")


def cors_headers(response: HttpResponse, origin: str) -> HttpResponse:
    response["Access-Control-Allow-Origin"] = origin
    response["Access-Control-Expose-Headers"] = ", ".join(EXPOSE_HEADERS)
    patch_vary_headers(response, ("Origin",))
    return response


def _preflight(request: HttpRequest, origin: str) -> HttpResponse:
    requested = [name.strip() for name in request.headers.get("Access-Control-Request-Headers", "").split(",")]
    headers = list(ALLOW_HEADERS)
    known = {name.lower() for name in headers}
    for name in requested[:MAX_REQUESTED_HEADERS]:
        if HEADER_NAME.match(name) and name.lower() not in known:
            headers.append(name)
            known.add(name.lower())
    response = HttpResponse(status=204)
    response["Access-Control-Allow-Origin"] = origin
    response["Access-Control-Allow-Methods"] = ALLOW_METHODS
    response["Access-Control-Allow-Headers"] = ", ".join(headers)
    response["Access-Control-Max-Age"] = str(MAX_AGE)
    patch_vary_headers(response, ("Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"))
    return response


class CorsMiddleware:
    """CORS for the client API (/api/v1/, /v1/).

    - A preflight is answered 204 for any origin (it has no key, so no tenant to ask).
    - An actual request whose origin check_origin allowed gets the CORS headers on its response, whatever it is.
    - An error answered before the origin could be checked (bad key, unknown id, body too large, rate limit, ...)
      gets them too, so a browser client can read it instead of seeing an opaque network error: an error carries
      no tenant data. A success never does unless the origin was allowed, and a refused origin never does.
    - A request without an Origin header (server to server) is left as it is.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        origin = request.headers.get("Origin")
        if not origin or not request.path.startswith(API_PREFIXES):
            return self.get_response(request)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return _preflight(request, origin)
        response = self.get_response(request)
        if getattr(request, _ALLOWED, False) or (response.status_code >= 400 and not getattr(request, _REFUSED, False)):
            cors_headers(response, origin)
        return response

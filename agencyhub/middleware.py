from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from agencyhub.exceptions import error_body
from tenants.config_cache import config_scope


class RequestSizeLimitMiddleware:
    """Answer 413 in the API's error shape before reading a body over MAX_REQUEST_BYTES."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.MAX_REQUEST_BYTES:
            return JsonResponse(
                error_body("request_too_large", "request_too_large", f"request body is {length} bytes; the limit is {settings.MAX_REQUEST_BYTES}"),
                status=413,
            )
        return self.get_response(request)


class ConfigScopeMiddleware:
    """One configuration-cache scope per client API request (tenants.config_cache): the key, its tenant and
    assistant and the routing configuration are read from this process's cache, after one version check."""

    PREFIXES = ("/api/v1/", "/v1/")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(self.PREFIXES):
            return self.get_response(request)
        with config_scope():
            return self.get_response(request)

"""`Authorization: Bearer <key>` for client sites. Resolves the tenant once per request."""

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from tenants.models import ApiKey
from tenants.services import api_key_resolve


class TenantPrincipal:
    """request.user for API calls: the tenant behind the key (not a Django user)."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key
        self.tenant = api_key.tenant

    def __str__(self) -> str:
        return f"tenant:{self.tenant.slug}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[TenantPrincipal, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw or " " in raw:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: expected 'Bearer <api key>'.")
        key = api_key_resolve(raw)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or inactive API key.")
        return TenantPrincipal(key), key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword

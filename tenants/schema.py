"""How the OpenAPI schema (drf-spectacular) describes the API key: a Bearer token, so /api/docs offers "Authorize"."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.ApiKeyAuthentication"
    name = "tenantApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "The client's API key (`create_tenant`, `issue_api_key`)."}

"""`GET /v1/models` and `GET /v1/models/{id}`: what an OpenAI client may put in `model`, in OpenAI's format.

Tools built on the OpenAI SDK (chat front-ends, agent frameworks) list the models before they offer them. The list
is `auto` (the routing policy chooses) and every enabled catalogue model that this API key can reach: its provider
is enabled and has a credential the key's tenant may use (its own, or the agency's where the policy allows), the
same test the router applies. A model id served by several providers is listed once, with all of them.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conversations.access import access_assistant
from conversations.api.origins import check_origin
from conversations.api.views import scoped_assistant
from providers.models import LLMModel
from routing.planner import agency_fallback_allowed, credentials_by_provider, policy_for

AUTO = {
    "id": "auto", "object": "model", "created": 0, "owned_by": "agencyhub",
    "agencyhub": {"description": "the routing policy chooses the model for each message"},
}


def reachable_models(request: Request) -> dict[str, dict]:
    """{model id: its OpenAI model object}, `auto` first, then by id."""
    tenant = request.user.tenant
    assistant = scoped_assistant(request) or access_assistant(tenant=tenant)
    check_origin(request, assistant)
    policy = policy_for(tenant, assistant.routing_policy)
    credentials = credentials_by_provider(tenant, agency_fallback_allowed(tenant, policy))
    found: dict[str, dict] = {"auto": AUTO}
    models = (
        LLMModel.objects.filter(is_enabled=True, provider__is_enabled=True, provider_id__in=list(credentials))
        .select_related("provider").order_by("model_id", "provider__kind")
    )
    for model in models:
        entry = found.get(model.model_id)
        if entry is None:
            found[model.model_id] = {
                "id": model.model_id, "object": "model", "created": 0, "owned_by": model.provider.kind,
                "agencyhub": {
                    "name": model.display_name, "tier": model.tier, "capabilities": list(model.capabilities),
                    "context_window": model.context_window, "max_output_tokens": model.max_output_tokens,
                    "providers": [model.provider.kind],
                },
            }
        else:
            entry["agencyhub"]["providers"].append(model.provider.kind)
    return found


MODEL_SCHEMA = inline_serializer("Model", fields={
    "id": serializers.CharField(), "object": serializers.CharField(), "created": serializers.IntegerField(),
    "owned_by": serializers.CharField(), "agencyhub": serializers.DictField(),
})


class ModelList(APIView):
    @extend_schema(responses={200: inline_serializer("ModelList", fields={
        "object": serializers.CharField(), "data": serializers.ListField(child=serializers.DictField())})},
        summary="OpenAI-compatible list of the models this key can use")
    def get(self, request: Request) -> Response:
        return Response({"object": "list", "data": list(reachable_models(request).values())})


class ModelDetail(APIView):
    @extend_schema(responses={200: MODEL_SCHEMA}, summary="OpenAI-compatible model object")
    def get(self, request: Request, model_id: str) -> Response:
        model = reachable_models(request).get(model_id)
        if model is None:
            raise NotFound(f"model {model_id!r} is not in the catalogue or has no usable provider credential")
        return Response(model)

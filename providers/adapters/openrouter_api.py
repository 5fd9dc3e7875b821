"""OpenRouter: OpenAI's wire format at another base URL, plus attribution headers and a reported cost."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from providers.adapters.openai_api import OpenAIAdapter
from providers.types import ChatRequest


class OpenRouterAdapter(OpenAIAdapter):
    kind = "openrouter"
    max_tokens_param = "max_tokens"
    # OpenRouter drops a parameter the chosen model does not take and passes `stop` to those that do (Claude through
    # OpenRouter keeps its stop sequences even where it refuses temperature).
    stop_needs_sampling = False

    def default_headers(self) -> dict[str, str]:
        return {"HTTP-Referer": settings.OPENROUTER_REFERER, "X-Title": settings.OPENROUTER_TITLE}

    def extra_body(self, request: ChatRequest) -> dict[str, Any]:
        # OpenRouter's own provider routing (order, allow_fallbacks, sort, max_price) when a caller asks for it.
        provider_prefs = request.metadata.get("openrouter_provider")
        return {"provider": provider_prefs} if provider_prefs else {}

    def _request_id(self, headers: Any, fallback: str) -> str:
        return headers.get("x-generation-id") or headers.get("x-request-id") or fallback

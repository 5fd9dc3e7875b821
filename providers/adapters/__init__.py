"""One adapter per provider kind behind one interface: `complete(request)` and `stream(request)`.

Nothing above the providers app imports an SDK: callers get an adapter from `adapter_for_credential`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from providers.adapters.anthropic_api import AnthropicAdapter
from providers.adapters.openai_api import OpenAIAdapter
from providers.adapters.openrouter_api import OpenRouterAdapter
from providers.adapters.sandbox import SandboxAdapter
from providers.types import Adapter

if TYPE_CHECKING:
    from providers.models import Credential

ADAPTERS: dict[str, type] = {
    "anthropic": AnthropicAdapter,
    "openai": OpenAIAdapter,
    "openrouter": OpenRouterAdapter,
    "sandbox": SandboxAdapter,
}


def get_adapter(kind: str, *, api_key: str, base_url: str) -> Adapter:
    try:
        cls = ADAPTERS[kind]
    except KeyError as exc:
        raise ValueError(f"no adapter for provider kind {kind!r}") from exc
    return cls(api_key=api_key, base_url=base_url)


def adapter_for_credential(credential: Credential) -> Adapter:
    provider = credential.provider
    return get_adapter(provider.kind, api_key=credential.get_key(), base_url=provider.base_url)

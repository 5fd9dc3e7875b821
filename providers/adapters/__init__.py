"""One adapter per provider kind behind one interface: `complete(request)` and `stream(request)`.

Nothing above the providers app imports an SDK: callers get an adapter from `adapter_for_credential`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx2

from providers.adapters.anthropic_api import AnthropicAdapter
from providers.adapters.openai_api import OpenAIAdapter
from providers.adapters.openrouter_api import OpenRouterAdapter
from providers.adapters.sandbox import SandboxAdapter
from providers.errors import ErrorKind, ProviderError
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
    """The credential's adapter. A DecryptionError (this process cannot read the key) propagates as it is: it says
    nothing about the key. A client the SDK cannot build (a base URL it refuses) is a ProviderError, like a call that
    cannot connect, so the chain moves on."""
    provider = credential.provider
    key = credential.get_key()
    try:
        return get_adapter(provider.kind, api_key=key, base_url=provider.base_url)
    except httpx2.InvalidURL as exc:
        raise ProviderError(ErrorKind.CONNECTION, f"cannot build the client: {exc}") from exc

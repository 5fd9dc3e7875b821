"""Checks on routing configuration that explain themselves, for the admin's forms: a target must not send calls to a
model without a price in force (it could not be billed), and a rule must not require prompts longer than its
target's models can hold. Each returns the messages to show; empty means fine."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils import timezone

from providers.models import LLMModel, ModelPrice
from routing.planner import target_models


def _label(model: LLMModel) -> str:
    return f"{model.display_name} ({model.provider.kind}:{model.model_id})"


def models_without_price(models: Iterable[LLMModel]) -> list[LLMModel]:
    models = list(models)
    priced = set(
        ModelPrice.objects.filter(model__in=[m.pk for m in models], valid_from__lte=timezone.now()).values_list("model_id", flat=True)
    )
    return [m for m in models if m.pk not in priced]


def price_problems(models: Iterable[LLMModel], *, where: str) -> list[str]:
    return [
        f"{where} routes to {_label(m)}, which has no price in force: its calls could not be billed. "
        "Add a price to the model (Providers › Models) first, or choose another model."
        for m in models_without_price(models)
    ]


def target_problems(target, *, where: str | None = None) -> list[str]:
    return price_problems(target_models(target), where=where or f"Target “{target}”")


def context_problems(target, *, min_prompt_tokens: int | None) -> list[str]:
    """A rule that fires only on prompts of at least `min_prompt_tokens` needs target models that can hold them."""
    if not min_prompt_tokens:
        return []
    models = target_models(target)
    too_small = [m for m in models if m.context_window <= min_prompt_tokens]
    if not too_small or (not target.model_id and len(too_small) < len(models)):
        return []  # a tier target is fine while one of its models fits (the planner skips the others)
    return [
        f"This rule applies to prompts of at least {min_prompt_tokens:,} tokens, but {_label(m)} in target “{target}” "
        f"has a context window of {m.context_window:,} tokens: choose a target with larger-context models, or lower "
        "“min prompt tokens”."
        for m in too_small
    ]

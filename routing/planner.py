"""The planner: a message in its context -> an ordered list of candidates (model + credential) and the reason.

Order of business: the policy (assistant override, else the tenant's, else the agency default) -> the
first rule whose conditions all hold, else the default target -> the target's models, ordered by its
strategy -> models that cannot take the request dropped (tools, images, context window) -> each model
paired with the credentials that may pay for it (the tenant's own first, then the agency's if allowed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

from django.utils import timezone

from providers.breaker import breaker
from providers.errors import NoPriceError
from providers.models import Capability, Credential, LLMModel, ModelPrice, ModelTier, ProviderKind, price_in_force
from routing.complexity.quantiles import share_threshold
from routing.models import ComplexityCalibration, RoutingPolicy, RoutingRule, RoutingTarget, Strategy
from routing.patterns import pattern_matches
from tenants.config_cache import config_scope, memo
from tenants.models import Tenant

TIER_ORDER = {ModelTier.ECONOMY: 0, ModelTier.STANDARD: 1, ModelTier.PREMIUM: 2}


class NoRouteError(Exception):
    """No enabled model with a usable credential can take this message."""


class UnknownModelError(LookupError):
    pass


@dataclass(frozen=True)
class Candidate:
    model: LLMModel
    credential: Credential

    @property
    def label(self) -> str:
        owner = "byok" if self.credential.is_byok else "agency"
        return f"{self.model.provider.kind}:{self.model.model_id} ({owner})"


@dataclass
class Plan:
    candidates: list[Candidate]
    reason: str
    details: dict = field(default_factory=dict)
    prices: dict[int, tuple[ModelPrice, ...]] = field(default_factory=dict)  # model pk -> its dated prices, for the ledger


@dataclass
class RoutingContext:
    """What the planner may look at. Built by the chat engine; everything is cheap to compute."""

    tenant: Tenant
    text: str = ""
    escalate: bool = False
    metadata: dict = field(default_factory=dict)
    turns: int = 1
    conversation_tokens: int = 0
    prompt_tokens: int = 0  # the whole prompt with its history (rules may route long contexts)
    required_tokens: int = 0  # what cannot be trimmed: system prompt + the latest turn
    max_output_tokens: int = 1024
    needs_tools: bool = False
    needs_vision: bool = False
    requested_model: str | None = None
    policy: RoutingPolicy | None = None  # an assistant's override
    force_tier: str | None = None  # over budget in "degrade" mode: the economy tier
    budget_used_percent: float | None = None  # filled lazily when a rule asks

    @cached_property
    def complexity(self) -> float | None:
        if not self.text.strip():
            return None
        from routing.complexity import score

        return round(score(self.text), 4)


def policy_for(tenant: Tenant, override: RoutingPolicy | None = None) -> RoutingPolicy | None:
    if override is not None:
        return override
    related = ("default_target__model__provider",)
    return memo(("policy", tenant.pk), lambda: (
        RoutingPolicy.objects.filter(tenant=tenant).select_related(*related).first()
        or RoutingPolicy.objects.filter(is_agency_default=True).select_related(*related).first()
    ))


def agency_fallback_allowed(tenant: Tenant | None, policy: RoutingPolicy | None) -> bool:
    """May this client's calls run on the agency's keys? Both the policy in use and the client's own must allow it:
    an assistant's override (often a shared policy) never lifts a client's "own keys only"."""
    own = policy_for(tenant) if tenant is not None else None
    return all(p.allow_agency_fallback for p in (policy, own) if p is not None)


def policy_rules(policy: RoutingPolicy) -> tuple[RoutingRule, ...]:
    """The policy's enabled rules, in order."""
    return memo(("rules", policy.pk), lambda: tuple(policy.rules.filter(is_enabled=True).select_related("target__model__provider")))


# --- conditions -------------------------------------------------------------------------------------


def _threshold(rule: RoutingRule, tenant: Tenant) -> float:
    if rule.min_complexity is not None:
        return rule.min_complexity
    def calibrated() -> float:
        calibration = (
            ComplexityCalibration.objects.filter(tenant=tenant, share_percent=rule.premium_share_percent).first()
            or ComplexityCalibration.objects.filter(tenant__isnull=True, share_percent=rule.premium_share_percent).first()
        )
        # Until the tenant's traffic is calibrated: the share's percentile on the scorer's training prompts.
        return calibration.threshold if calibration else share_threshold(rule.premium_share_percent)

    return memo(("threshold", tenant.pk, rule.premium_share_percent), calibrated)


def _budget_used(ctx: RoutingContext) -> float:
    if ctx.budget_used_percent is None:
        from billing.services import budget_used_percent

        ctx.budget_used_percent = budget_used_percent(ctx.tenant)
    return ctx.budget_used_percent


def rule_matches(rule: RoutingRule, ctx: RoutingContext, policy: RoutingPolicy, notes: dict) -> bool:
    """All set conditions must hold. `notes` collects what was measured, for the decision record."""
    if rule.on_escalation:
        text = ctx.text.lower()
        phrase = next((p for p in policy.phrases() if p in text), None)
        if not (ctx.escalate or phrase):
            return False
        notes["escalation"] = "flag" if ctx.escalate else f"phrase: {phrase}"
    if rule.min_turns is not None and ctx.turns < rule.min_turns:
        return False
    if rule.min_conversation_tokens is not None and ctx.conversation_tokens < rule.min_conversation_tokens:
        return False
    if rule.min_prompt_tokens is not None and ctx.prompt_tokens < rule.min_prompt_tokens:
        return False
    if rule.needs_tools and not ctx.needs_tools:
        return False
    if rule.needs_vision and not ctx.needs_vision:
        return False
    conditions = rule.metadata_equals or {}
    if not isinstance(conditions, dict):
        return False  # not a condition we can read (saved around RoutingRule.clean): never fire, never fail the message
    for key, expected in conditions.items():
        if ctx.metadata.get(key) != expected:
            return False
    if rule.pattern and not pattern_matches(rule.pattern, ctx.text):
        return False
    if rule.min_complexity is not None or rule.premium_share_percent is not None:
        threshold = _threshold(rule, ctx.tenant)
        notes["complexity_threshold"] = threshold
        if ctx.complexity is None or ctx.complexity < threshold:
            return False
    if rule.budget_used_percent is not None:
        used = _budget_used(ctx)
        notes["budget_used_percent"] = round(used, 2)
        if used <= rule.budget_used_percent:
            return False
    return True


# --- targets -> models -> candidates ----------------------------------------------------------------


def model_prices(model: LLMModel) -> tuple[ModelPrice, ...]:
    """Every dated price of a model (cached with the configuration; `price_in_force` picks the one in force)."""
    return memo(("prices", model.pk), lambda: tuple(model.prices.all()))


def _price_key(model: LLMModel) -> Decimal:
    try:
        price = price_in_force(model, model_prices(model), timezone.now())
    except NoPriceError:
        return Decimal("Infinity")
    return price.input_per_mtok + price.output_per_mtok


def tier_models(tier: str) -> tuple[LLMModel, ...]:
    """Every enabled model of a tier, cheapest first."""
    return memo(("tier", tier), lambda: tuple(sorted(
        LLMModel.objects.filter(tier=tier, is_enabled=True, provider__is_enabled=True).select_related("provider"), key=_price_key
    )))


def target_models(target: RoutingTarget) -> tuple[LLMModel, ...]:
    """The target's models in chain order (before strategy): the model or the tier's, then its fallbacks."""
    def models() -> tuple[LLMModel, ...]:
        head = (target.model,) if target.model_id else tier_models(target.tier)
        fallbacks = tuple(f.model for f in target.fallbacks.select_related("model__provider"))
        seen: set[int] = set()
        return tuple(m for m in head + fallbacks if not (m.pk in seen or seen.add(m.pk)))

    return memo(("target", target.pk), models)


def can_take(model: LLMModel, ctx: RoutingContext) -> str | None:
    """Why this model cannot take the request, or None."""
    if not model.is_enabled or not model.provider.is_enabled:
        return "disabled"
    try:
        price_in_force(model, model_prices(model), timezone.now())
    except NoPriceError:
        return "no price in force"  # its call could not be billed: never send it to the provider
    if ctx.needs_tools and not model.has_capability(Capability.TOOLS):
        return "no tools"
    if ctx.needs_vision and not model.has_capability(Capability.VISION):
        return "no vision"
    # History is trimmed to fit each model; only what cannot be trimmed must fit.
    if max(ctx.required_tokens, 0) + min(ctx.max_output_tokens, model.max_output_tokens) > model.context_window:
        return f"context window {model.context_window} too small"
    return None


def credentials_by_provider(tenant: Tenant | None, allow_agency: bool = True) -> dict[int, tuple[Credential, ...]]:
    """Usable credentials per provider id: the tenant's own first, then the agency's where allowed."""

    def build() -> dict[int, tuple[Credential, ...]]:
        by_provider: dict[int, list[Credential]] = {}
        usable = Credential.objects.usable().select_related("provider", "tenant")
        own = usable.for_tenant(tenant).order_by("pk") if tenant is not None else []
        for credential in own:
            by_provider.setdefault(credential.provider_id, []).append(credential)
        # A BYOK tenant whose policy forbids agency fallback never gets the agency's keys, not even once its own key
        # was disabled after a 401 (a disabled own key is still "theirs"): only tenants with no key of their own
        # at all run on the agency's keys.
        if allow_agency or tenant is None or not Credential.objects.for_tenant(tenant).exists():
            for credential in usable.agency().order_by("pk"):
                by_provider.setdefault(credential.provider_id, []).append(credential)
        return {provider_id: tuple(credentials) for provider_id, credentials in by_provider.items()}

    return memo(("credentials", tenant.pk if tenant is not None else None, allow_agency), build)


def keyed_providers(tenant: Tenant | None, allow_agency: bool = True) -> frozenset[int]:
    """Providers the tenant has a key for, usable or not (disabled after a 401, say): the models it may name. A named
    model whose keys are all disabled for now still fails over to the policy's default; one with no key at all is
    not the client's to name."""

    def build() -> frozenset[int]:
        own = set(Credential.objects.for_tenant(tenant).values_list("provider_id", flat=True)) if tenant is not None else set()
        if allow_agency or not own:
            own |= set(Credential.objects.agency().values_list("provider_id", flat=True))
        return frozenset(own)

    return memo(("keyed-providers", tenant.pk if tenant is not None else None, allow_agency), build)


def _order(candidates: list[Candidate], strategy: str) -> list[Candidate]:
    if strategy == Strategy.CHEAPEST:
        return sorted(candidates, key=lambda c: _price_key(c.model))  # stable: chain order breaks ties
    if strategy == Strategy.FASTEST:
        cb = breaker()

        def latency(candidate: Candidate) -> float:
            value = cb.latency_ms(candidate.credential.pk, candidate.model.pk)
            return value if value is not None else float("inf")

        return sorted(candidates, key=latency)
    return candidates


def order_candidates(models: Iterable[LLMModel], creds: dict[int, tuple[Credential, ...]], strategy: str) -> list[Candidate]:
    """Every (model, usable key) pair, in the order real traffic tries them: the strategy's order, then the client's
    own keys across the whole chain before any agency key (the agency's key is the fallback when theirs fail, billed
    as agency usage, never the first choice). The sandbox (the offline demo provider) answers only when no real
    provider could: it would otherwise win "fastest", answer real users during an outage and pass drills."""
    candidates = [Candidate(model=m, credential=c) for m in models for c in creds.get(m.provider_id, [])]
    real = [c for c in candidates if c.model.provider.kind != ProviderKind.SANDBOX]
    ordered = _order(real or candidates, strategy)
    return [c for c in ordered if c.credential.is_byok] + [c for c in ordered if not c.credential.is_byok]


def _widen(ctx: RoutingContext, target_tier: str | None) -> list[LLMModel]:
    """When no model of the target can take the request, any catalogue model that can, nearest tier first."""
    wanted = TIER_ORDER.get(target_tier or ModelTier.ECONOMY, 0)
    capable = [
        m for m in LLMModel.objects.filter(is_enabled=True, provider__is_enabled=True).select_related("provider")
        if can_take(m, ctx) is None
    ]
    return sorted(capable, key=lambda m: (abs(TIER_ORDER.get(m.tier, 9) - wanted), _price_key(m), m.model_id))


def _default_chain() -> tuple[LLMModel, ...]:
    """With no policy anywhere: each provider's cheapest economy model, cheapest first."""
    def build() -> tuple[LLMModel, ...]:
        best: dict[int, tuple] = {}
        for model in LLMModel.objects.filter(is_enabled=True, provider__is_enabled=True).select_related("provider"):
            key = (TIER_ORDER.get(model.tier, 9), _price_key(model), model.model_id)
            if key[1] != Decimal("Infinity") and (model.provider_id not in best or key < best[model.provider_id][0]):
                best[model.provider_id] = (key, model)
        return tuple(model for _, model in sorted(best.values(), key=lambda item: item[0]))

    return memo(("default-chain",), build)


def resolve_model(name: str) -> tuple[LLMModel, ...]:
    """Catalogue models called `name` (the provider's model id)."""
    found = memo(("model", name), lambda: tuple(
        LLMModel.objects.filter(model_id=name, is_enabled=True, provider__is_enabled=True).select_related("provider")
    ))
    if not found:
        raise UnknownModelError(f"unknown model {name!r}: use 'auto' or a model id from the catalogue")
    return found


def _disabled_keys_note(tenant: Tenant | None, allow_agency: bool) -> str:
    """Why there is no key, when keys exist but are disabled (a provider rejected them): the client should not retry."""
    keys = Credential.objects.filter(is_enabled=False).select_related("provider")
    own = list(keys.for_tenant(tenant)) if tenant is not None else []
    theirs = list(keys.agency()) if allow_agency or not own else []
    disabled = sorted({f"{c.provider.kind} ({'own' if c.tenant_id else 'agency'})" for c in own + theirs})
    return f"; provider keys disabled (e.g. rejected by the provider, staff alerted): {', '.join(disabled)}" if disabled else ""


def plan_route(ctx: RoutingContext) -> Plan:
    """Plan one message. The configuration it reads is cached per process (tenants.config_cache)."""
    with config_scope():
        return _plan(ctx)


def _plan(ctx: RoutingContext) -> Plan:
    policy = policy_for(ctx.tenant, ctx.policy)
    notes: dict = {"policy": policy.name if policy else None, "complexity": ctx.complexity}
    rule_name = None
    strategy = Strategy.IN_ORDER
    target: RoutingTarget | None = None
    requested: tuple[LLMModel, ...] = ()
    if ctx.force_tier:
        models = tier_models(ctx.force_tier)
        reason = f"{ctx.force_tier} tier"
    elif ctx.requested_model and ctx.requested_model != "auto":
        models = requested = resolve_model(ctx.requested_model)
        if policy:  # then the default target: the client's call is still answered while the named model fails
            models = models + target_models(policy.default_target)
        else:  # no policy: the same fallback as `auto` without one
            models = models + _default_chain()
        reason = f"requested model {ctx.requested_model}"
    elif policy:
        for rule in policy_rules(policy):
            if rule_matches(rule, ctx, policy, notes):
                target, rule_name = rule.target, rule.name
                break
        target = target or policy.default_target
        strategy = target.strategy
        models = target_models(target)
        reason = f"rule {rule_name!r} -> {target.name}" if rule_name else f"default -> {target.name}"
    else:
        models = _default_chain()
        reason = "no policy: cheapest economy model per provider"

    models = tuple(dict.fromkeys(models))  # a model named twice (requested and heading the default target, or listed
    # twice in a chain) is tried once: a second call to the same key and model would only wait on the same failure
    excluded = {}
    fitting = []
    for model in models:
        why = can_take(model, ctx)
        if why:
            excluded[f"{model.provider.kind}:{model.model_id}"] = why
        else:
            fitting.append(model)
    allow_agency = agency_fallback_allowed(ctx.tenant, policy)
    creds = credentials_by_provider(ctx.tenant, allow_agency)
    if models and not any(creds.get(m.provider_id) for m in fitting):
        # None of the target's models that can take it has a usable key (a BYOK client with another provider's key,
        # an agency with one provider): widen, as when no model of the target can take the request at all.
        fitting = _widen(ctx, (target.tier or (target.model.tier if target.model_id else None)) if target else None)
        reason += "; widened: no model of the target could take the request with a usable key"

    keyed = keyed_providers(ctx.tenant, allow_agency) if requested else frozenset()
    if requested and not any(m.provider_id in keyed for m in requested):
        # As GET /v1/models has it: a model no key of this client's may call is not one it can name.
        raise UnknownModelError(f"model {ctx.requested_model!r} is not available to this client (no provider key for it): "
                                "use 'auto' or a model listed by GET /v1/models")
    candidates = order_candidates(fitting, creds, strategy)
    details = {
        **notes,
        "rule": rule_name,
        "target": target.name if target else None,
        "strategy": strategy,
        "over_budget": policy.over_budget if policy else None,
        "excluded": excluded,
        "candidates": [c.label for c in candidates],
    }
    if not candidates:
        raise NoRouteError(
            "no enabled model with a usable provider credential can take this request"
            + (f" (excluded: {excluded})" if excluded else "") + _disabled_keys_note(ctx.tenant, allow_agency)
        )
    return Plan(candidates=candidates, reason=reason, details=details, prices={c.model.pk: model_prices(c.model) for c in candidates})

"""The model catalogue AgencyHub offers, and `catalog_load`, which writes it with dated prices from `genai-prices`.

Prices come from the data bundled with the installed `genai-prices` package (no network). The curated list
below decides *which* models we offer and how we describe them; genai-prices decides what they cost.

Price history rules (prices are a ledger: a row used for billing is never changed or deleted):
- A model with no price rows yet gets genai-prices' whole dated history: its first price from HISTORY_START,
  each later `StartDateConstraint` price from that date at 00:00 UTC (genai-prices compares UTC dates).
- A model that already has prices never gets a row slipped in behind them: a dated entry that is new to us but
  already started would re-price calls that were billed at the old price. Such a change is picked up instead by
  the next rule, from `at` (the load time) on. Future-dated entries are added as they are (nothing billed yet).
- If the price in force at `at` differs from genai-prices' price at `at` (staff set another price, or the
  package was upgraded), a new row is added with valid_from = `at`.
Only the standard price is imported: batch / priority / flex variants, 1-hour cache writes and per-request
fees (web search) are not modelled by ModelPrice.

A curated model missing from genai-prices' data raises CatalogError and the whole load rolls back: an upgrade
that drops a model should fail loudly rather than leave it routable on a price we can no longer confirm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from decimal import ROUND_HALF_UP, Decimal
from importlib.metadata import version
from typing import Any

from django.db import transaction
from django.utils import timezone
from genai_prices import types as gp
from genai_prices.data_snapshot import get_snapshot

from providers.models import (
    DEFAULT_BASE_URLS,
    Capability,
    LLMModel,
    ModelPrice,
    ModelTier,
    Provider,
    ProviderKind,
)

# Before any model we offer was released: the start of a model's first (undated) genai-prices price.
HISTORY_START = datetime(2020, 1, 1, tzinfo=UTC)
LONG_CONTEXT_TOKENS = 400_000
# ModelPrice stores 6 decimal places; quantizing before comparing keeps a second load from seeing
# a "change" in prices like 0.0833333333333333 that the database rounded.
RATE_PLACES = Decimal("0.000001")
# genai-prices attribute -> our rate name (as used in ModelPrice.tiers and ModelPrice.rates_for).
RATE_KEYS = (
    ("input_mtok", "input"),
    ("output_mtok", "output"),
    ("cache_read_mtok", "cached_input"),
    ("cache_write_mtok", "cache_write"),
)

R, T, V = Capability.REASONING.value, Capability.TOOLS.value, Capability.VISION.value
ECONOMY, STANDARD, PREMIUM = ModelTier.ECONOMY, ModelTier.STANDARD, ModelTier.PREMIUM


class CatalogError(RuntimeError):
    """The curated catalogue and genai-prices' data disagree (a model or a price is missing)."""


@dataclass(frozen=True)
class PriceRef:
    """Where a model's price lives in genai-prices: provider id and a model reference it matches."""

    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True)
class CatalogEntry:
    kind: ProviderKind
    model_id: str  # as sent to the provider's API
    display_name: str
    tier: ModelTier
    capabilities: tuple[str, ...]  # long_context is added from the context window
    max_output_tokens: int
    context_window: int  # used only when genai-prices has no context window for the model
    price: PriceRef
    supports_temperature: bool = True
    mirrors: bool = False  # True: a sandbox model priced as the model `price` points to


def _anthropic(model_id: str, name: str, tier: ModelTier, max_out: int, *, temperature: bool = True) -> CatalogEntry:
    return CatalogEntry(ProviderKind.ANTHROPIC, model_id, name, tier, (R, T, V), max_out, 200_000,
                        PriceRef("anthropic", model_id), temperature)


def _openai(model_id: str, name: str, tier: ModelTier, caps: tuple[str, ...], max_out: int, window: int,
            *, temperature: bool = True) -> CatalogEntry:
    return CatalogEntry(ProviderKind.OPENAI, model_id, name, tier, caps, max_out, window,
                        PriceRef("openai", model_id), temperature)


def _openrouter(model_id: str, name: str, tier: ModelTier, caps: tuple[str, ...], max_out: int, window: int) -> CatalogEntry:
    return CatalogEntry(ProviderKind.OPENROUTER, model_id, name, tier, caps, max_out, window,
                        PriceRef("openrouter", model_id))


def _sandbox(model_id: str, name: str, tier: ModelTier, mirror: str) -> CatalogEntry:
    return CatalogEntry(ProviderKind.SANDBOX, model_id, name, tier, (T, V), 8_192, 200_000,
                        PriceRef("anthropic", mirror), mirrors=True)


CATALOG: tuple[CatalogEntry, ...] = (
    # Anthropic: the Claude 5 family and the opus-4-8 reject `temperature` (sampling is fixed).
    _anthropic("claude-haiku-4-5", "Claude Haiku 4.5", ECONOMY, 64_000),
    _anthropic("claude-haiku-5-5", "Claude Haiku 5.5", ECONOMY, 64_000),
    _anthropic("claude-sonnet-4-5", "Claude Sonnet 4.5", STANDARD, 64_000),
    _anthropic("claude-sonnet-4-6", "Claude Sonnet 4.6", STANDARD, 64_000),
    _anthropic("claude-sonnet-5-5", "Claude Sonnet 5.5", STANDARD, 128_000, temperature=False),
    _anthropic("claude-opus-4-8", "Claude Opus 4.8", PREMIUM, 128_000, temperature=False),
    _anthropic("claude-opus-5", "Claude Opus 5", PREMIUM, 128_000, temperature=False),
    _anthropic("claude-opus-5-5", "Claude Opus 5.5", PREMIUM, 128_000, temperature=False),
    # OpenAI: o-series and gpt-5 reasoning models reject `temperature`.
    _openai("gpt-4o", "GPT-4o", STANDARD, (T, V), 16_384, 128_000),
    _openai("gpt-4o-mini", "GPT-4o mini", ECONOMY, (T, V), 16_384, 128_000),
    _openai("gpt-4.1", "GPT-4.1", STANDARD, (T, V), 32_768, 1_047_576),
    _openai("gpt-4.1-mini", "GPT-4.1 mini", ECONOMY, (T, V), 32_768, 1_047_576),
    _openai("gpt-4.1-nano", "GPT-4.1 nano", ECONOMY, (T, V), 32_768, 1_047_576),
    _openai("gpt-5", "GPT-5", STANDARD, (R, T, V), 128_000, 400_000, temperature=False),
    _openai("gpt-5-mini", "GPT-5 mini", ECONOMY, (R, T, V), 128_000, 400_000, temperature=False),
    _openai("gpt-5-nano", "GPT-5 nano", ECONOMY, (R, T, V), 128_000, 400_000, temperature=False),
    _openai("o3", "o3", PREMIUM, (R, T, V), 100_000, 200_000, temperature=False),
    _openai("o4-mini", "o4-mini", ECONOMY, (R, T, V), 100_000, 200_000, temperature=False),
    # OpenRouter: ids are "vendor/model"; prices are OpenRouter's own (they can differ from the vendor's).
    _openrouter("anthropic/claude-haiku-4.5", "Claude Haiku 4.5 (OpenRouter)", ECONOMY, (R, T, V), 64_000, 200_000),
    _openrouter("anthropic/claude-sonnet-4.5", "Claude Sonnet 4.5 (OpenRouter)", STANDARD, (R, T, V), 64_000, 1_000_000),
    _openrouter("openai/gpt-4o-mini", "GPT-4o mini (OpenRouter)", ECONOMY, (T, V), 16_384, 128_000),
    _openrouter("openai/gpt-4o", "GPT-4o (OpenRouter)", STANDARD, (T, V), 16_384, 128_000),
    _openrouter("meta-llama/llama-3.3-70b-instruct", "Llama 3.3 70B Instruct (OpenRouter)", ECONOMY, (T,), 16_384, 131_072),
    _openrouter("google/gemini-2.5-flash", "Gemini 2.5 Flash (OpenRouter)", ECONOMY, (R, T, V), 65_535, 1_048_576),
    # Sandbox (offline demo): priced like the Claude 4.5 generation so demo bills look real.
    _sandbox("sandbox-economy", "Sandbox Economy", ECONOMY, "claude-haiku-4-5"),
    _sandbox("sandbox-standard", "Sandbox Standard", STANDARD, "claude-sonnet-4-5"),
    _sandbox("sandbox-premium", "Sandbox Premium", PREMIUM, "claude-opus-4-5"),
)


@dataclass
class CatalogReport:
    genai_prices_version: str
    at: datetime
    providers_created: list[str] = field(default_factory=list)
    models_created: list[str] = field(default_factory=list)
    models_updated: list[str] = field(default_factory=list)
    prices_added: list[str] = field(default_factory=list)  # "kind:model_id from <iso date>"

    def as_dict(self) -> dict[str, Any]:
        return {
            "genai_prices_version": self.genai_prices_version,
            "at": self.at.isoformat(),
            "counts": {
                "providers_created": len(self.providers_created),
                "models_created": len(self.models_created),
                "models_updated": len(self.models_updated),
                "prices_added": len(self.prices_added),
            },
            "providers_created": self.providers_created,
            "models_created": self.models_created,
            "models_updated": self.models_updated,
            "prices_added": self.prices_added,
        }


# --- genai-prices -> our price shape -------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceSpec:
    """One ModelPrice row's rates, quantized to what the database stores."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None
    cache_write: Decimal | None
    tiers: tuple[tuple[int, tuple[tuple[str, Decimal], ...]], ...] = ()  # ((threshold, ((rate, price), ...)), ...)

    def row_fields(self) -> dict[str, Any]:
        return {
            "input_per_mtok": self.input,
            "output_per_mtok": self.output,
            "cached_input_per_mtok": self.cached_input,
            "cache_write_per_mtok": self.cache_write,
            "tiers": [
                {"above_input_tokens": start, **{name: _decimal_str(price) for name, price in rates}}
                for start, rates in self.tiers
            ],
        }

    @classmethod
    def from_row(cls, row: ModelPrice) -> PriceSpec:
        tiers = sorted(
            (
                int(entry["above_input_tokens"]),
                tuple(sorted((k, _quantize(v)) for k, v in entry.items() if k != "above_input_tokens" and v is not None)),
            )
            for entry in row.tiers or []
        )
        return cls(
            input=_quantize(row.input_per_mtok),
            output=_quantize(row.output_per_mtok),
            cached_input=_quantize_or_none(row.cached_input_per_mtok),
            cache_write=_quantize_or_none(row.cache_write_per_mtok),
            tiers=tuple(tiers),
        )


def _quantize(value: Decimal | str | int) -> Decimal:
    return Decimal(str(value)).quantize(RATE_PLACES, rounding=ROUND_HALF_UP)


def _quantize_or_none(value: Decimal | None) -> Decimal | None:
    return None if value is None else _quantize(value)


def _decimal_str(value: Decimal) -> str:
    """'6' rather than '6.000000' or '6E+0': the tiers JSON is read by people in the admin."""
    return format(value.normalize(), "f")


def _price_spec(price: gp.ModelPrice, ref: PriceRef) -> PriceSpec:
    base: dict[str, Decimal | None] = {}
    tiers: dict[int, dict[str, Decimal]] = {}
    for genai_key, name in RATE_KEYS:
        value = getattr(price, genai_key)
        if isinstance(value, gp.TieredPrices):
            base[name] = _quantize(value.base)
            # Cliff rule: a rate with no tier at a threshold stays at its lower rate, so it is simply omitted.
            for tier in value.tiers:
                tiers.setdefault(tier.start, {})[name] = _quantize(tier.price)
        else:
            base[name] = _quantize_or_none(value)
    if base["input"] is None or base["output"] is None:
        raise CatalogError(f"genai-prices has no input/output price for {ref}.")
    return PriceSpec(
        input=base["input"],
        output=base["output"],
        cached_input=base["cached_input"],
        cache_write=base["cache_write"],
        tiers=tuple((start, tuple(sorted(rates.items()))) for start, rates in sorted(tiers.items())),
    )


def _valid_from(index: int, conditional: gp.ConditionalPrice, ref: PriceRef) -> datetime:
    # genai-prices falls back to the first price when no condition matches, so the first one has no start.
    if index == 0:
        return HISTORY_START
    constraint = conditional.constraint
    if isinstance(constraint, gp.StartDateConstraint):
        return datetime.combine(constraint.start_date, time.min, tzinfo=UTC)
    raise CatalogError(f"genai-prices prices {ref} by {type(constraint).__name__}, which ModelPrice cannot model.")


def _price_history(info: gp.ModelInfo, ref: PriceRef) -> dict[datetime, PriceSpec]:
    if isinstance(info.prices, gp.ModelPrice):
        return {HISTORY_START: _price_spec(info.prices, ref)}
    history: dict[datetime, PriceSpec] = {}
    for index, conditional in enumerate(info.prices):
        # A later entry with the same start wins, as in genai-prices ("last active price").
        history[_valid_from(index, conditional, ref)] = _price_spec(conditional.prices, ref)
    return dict(sorted(history.items()))


def _find_model(snapshot: Any, ref: PriceRef) -> gp.ModelInfo:
    provider = next((p for p in snapshot.providers if p.id == ref.provider), None)
    # No fallback to other providers: a model's price must come from the provider we call.
    info = provider.find_model(ref.model) if provider else None
    if info is None:
        raise CatalogError(
            f"{ref} is in the curated catalogue but not in genai-prices {version('genai-prices')}'s data: "
            "fix the reference in providers/catalog.py or drop the model from CATALOG."
        )
    return info


# --- writes --------------------------------------------------------------------------------------------------


def _ensure_providers(report: CatalogReport) -> dict[str, Provider]:
    providers = {}
    for kind in ProviderKind:
        # get_or_create: a base_url staff edited is never overwritten.
        provider, created = Provider.objects.get_or_create(kind=kind, defaults={"base_url": DEFAULT_BASE_URLS[kind]})
        if created:
            report.providers_created.append(kind.value)
        providers[kind.value] = provider
    return providers


def _model_fields(entry: CatalogEntry, info: gp.ModelInfo) -> dict[str, Any]:
    window = entry.context_window if entry.mirrors or not info.context_window else info.context_window
    capabilities = list(entry.capabilities)
    if window >= LONG_CONTEXT_TOKENS:
        capabilities.append(Capability.LONG_CONTEXT.value)
    return {
        "display_name": entry.display_name,
        "context_window": window,
        "max_output_tokens": entry.max_output_tokens,
        "capabilities": capabilities,
        "tier": entry.tier.value,
        "supports_temperature": entry.supports_temperature,
    }


def _upsert_model(entry: CatalogEntry, provider: Provider, info: gp.ModelInfo, report: CatalogReport) -> LLMModel:
    fields = _model_fields(entry, info)
    label = f"{entry.kind.value}:{entry.model_id}"
    model = LLMModel.objects.filter(provider=provider, model_id=entry.model_id).first()
    if model is None:
        report.models_created.append(label)
        return LLMModel.objects.create(provider=provider, model_id=entry.model_id, **fields)
    changed = [name for name, value in fields.items() if getattr(model, name) != value]
    if changed:  # only what changed: is_enabled and anything not curated stays as staff left it
        for name in changed:
            setattr(model, name, fields[name])
        model.save(update_fields=changed)
        report.models_updated.append(label)
    return model


def _add_price(model: LLMModel, valid_from: datetime, spec: PriceSpec, source: str, report: CatalogReport) -> None:
    ModelPrice.objects.create(model=model, valid_from=valid_from, source=source[:100], **spec.row_fields())
    report.prices_added.append(f"{model.provider.kind}:{model.model_id} from {valid_from.isoformat()}")


def _sync_prices(model: LLMModel, history: dict[datetime, PriceSpec], current: PriceSpec, source: str,
                 at: datetime, report: CatalogReport) -> None:
    existing = set(model.prices.values_list("valid_from", flat=True))
    for valid_from, spec in history.items():
        if valid_from in existing:
            continue
        if existing and valid_from <= at:
            continue  # would re-price calls already billed; the check below adds it from `at` instead
        _add_price(model, valid_from, spec, source, report)
    in_force = model.prices.filter(valid_from__lte=at).order_by("-valid_from").first()
    if in_force is None or PriceSpec.from_row(in_force) != current:
        _add_price(model, at, current, f"{source} (seen at load)", report)


def _load_entry(entry: CatalogEntry, snapshot: Any, providers: dict[str, Provider], at: datetime,
                report: CatalogReport) -> None:
    info = _find_model(snapshot, entry.price)
    model = _upsert_model(entry, providers[entry.kind.value], info, report)
    source = f"genai-prices {report.genai_prices_version}: {entry.price}"
    if entry.mirrors:
        source = f"genai-prices {report.genai_prices_version}: mirrors {entry.price}"
    current = _price_spec(info.get_prices(at), entry.price)
    _sync_prices(model, _price_history(info, entry.price), current, source, at, report)


def catalog_load(*, at: datetime | None = None) -> CatalogReport:
    """Create or update the curated models and their dated prices. Idempotent; never edits or deletes a price."""
    at = at or timezone.now()
    snapshot = get_snapshot()
    report = CatalogReport(genai_prices_version=version("genai-prices"), at=at)
    with transaction.atomic():
        providers = _ensure_providers(report)
        for entry in CATALOG:
            _load_entry(entry, snapshot, providers, at, report)
    return report

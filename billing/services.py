from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from billing.models import KeyOwnership, UsageRecord
from providers.metrics import metrics_usage_record
from providers.errors import NoPriceError
from providers.models import COST_PLACES, MTOK, Credential, LLMModel, ModelPrice, price_for, price_in_force
from providers.types import ChatResult
from tenants.models import Tenant


def usage_record_build(
    *,
    tenant: Tenant,
    model: LLMModel,
    credential: Credential | None,
    result: ChatResult,
    conversation_id: UUID | None = None,
    message_id: UUID | None = None,
    at: datetime | None = None,
    prices: Iterable[ModelPrice] | None = None,
) -> UsageRecord:
    """One ledger row, unsaved, priced at the list price in force at `at` (NoPriceError if none).

    `prices`: the model's dated prices if the caller has them (the chat engine's routing plan caches them), else
    they are read from the database."""
    at = at or timezone.now()
    price = price_for(model, at) if prices is None else price_in_force(model, prices, at)
    usage = result.usage
    byok = credential is not None and credential.is_byok
    cost = price.cost(usage)
    return UsageRecord(
        tenant=tenant,
        conversation_id=conversation_id,
        message_id=message_id,
        provider_kind=model.provider.kind,
        model=model,
        model_name=result.model or model.model_id,
        credential=credential,
        ownership=KeyOwnership.BYOK if byok else KeyOwnership.AGENCY,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        price=price,
        cost=cost,
        # The client's rates now, fixed on the row: changing them later never reprices this call.
        billed_percent=tenant.byok_fee_percent if byok else tenant.markup_percent,
        billed=billed_amount(agency_cost=Decimal("0") if byok else cost, byok_cost=cost if byok else Decimal("0"),
                             markup_percent=tenant.markup_percent, byok_fee_percent=tenant.byok_fee_percent).quantize(COST_PLACES),
        provider_reported_cost=result.provider_cost,
        usage_estimated=usage.estimated,
        latency_ms=result.latency_ms,
        ttft_ms=result.ttft_ms,
        request_id=result.request_id[:200],
        created_at=at,
        local_date=tenant_local_date(tenant, at),
    )


def usage_record_append(record: UsageRecord) -> UsageRecord:
    """Save a ledger row built by `usage_record_build` through the ORM, and count it (the chat engine writes its rows
    with the reply instead: conversations.writes)."""
    record.save()
    usage_record_count(record)
    return record


def usage_record_count(record: UsageRecord) -> None:
    """Count a written ledger row for /metrics once its transaction commits (at once outside one): a rolled-back
    call was not billed. Every writer of ledger rows calls this."""
    counts = {
        "provider": record.provider_kind, "model": record.model.model_id, "cost": record.cost, "latency_ms": record.latency_ms,
        "tokens": {
            "input": record.input_tokens, "output": record.output_tokens, "cached_input": record.cached_input_tokens,
            "cache_write": record.cache_write_tokens, "reasoning": record.reasoning_tokens,
        },
    }
    transaction.on_commit(lambda: metrics_usage_record(**counts), robust=True)


def tenant_local_date(tenant: Tenant, at: datetime) -> date:
    return at.astimezone(zoneinfo.ZoneInfo(tenant.timezone or "UTC")).date()


def tenant_day_bounds(tenant: Tenant, at: datetime | None = None) -> tuple[datetime, datetime]:
    """The start and end of the tenant's current day, in its own time zone (budgets reset at its midnight)."""
    zone = zoneinfo.ZoneInfo(tenant.timezone or "UTC")
    local = (at or timezone.now()).astimezone(zone)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def tokens_used_today(tenant: Tenant) -> int:
    totals = UsageRecord.objects.filter(tenant=tenant, local_date=tenant_local_date(tenant, timezone.now())).aggregate(
        total=Sum(F("input_tokens") + F("output_tokens") + F("cached_input_tokens") + F("cache_write_tokens"))
    )
    return int(totals["total"] or 0)


def budget_used_percent(tenant: Tenant) -> float:
    """Share of today's token budget used, in percent (0 when the tenant has no budget)."""
    if not tenant.daily_token_budget:
        return 0.0
    return 100.0 * tokens_used_today(tenant) / tenant.daily_token_budget


def billed_amount(*, agency_cost: Decimal, byok_cost: Decimal, markup_percent: Decimal, byok_fee_percent: Decimal) -> Decimal:
    """What a client is billed for list costs, unrounded: agency-key usage plus its markup, and on its own keys
    (BYOK) only the platform fee. The one formula behind the spend cap, the dashboard and invoice lines (the nightly
    roll-up applies the same in SQL: billing/rollup.py)."""
    return agency_cost * (1 + markup_percent / 100) + byok_cost * byok_fee_percent / 100


def billed_estimate(*, tenant: Tenant, model: LLMModel, byok: bool, prices: Iterable[ModelPrice] | None,
                    input_tokens: int, output_tokens: int) -> Decimal:
    """What a call may be billed, unrounded, before it is made: the estimated prompt at the input rate and the full max
    output, at the price in force now (0 for a model with no price: such a call fails unbilled)."""
    try:
        price = price_for(model) if prices is None else price_in_force(model, prices, timezone.now())
    except NoPriceError:
        return Decimal("0")
    rates = price.rates_for(input_tokens)
    cost = (input_tokens * rates["input"] + output_tokens * rates["output"]) / MTOK
    return billed_amount(agency_cost=Decimal("0") if byok else cost, byok_cost=cost if byok else Decimal("0"),
                         markup_percent=tenant.markup_percent, byok_fee_percent=tenant.byok_fee_percent)


def month_spend(tenant: Tenant) -> Decimal:
    """What the tenant is billed this month so far (agency-key usage with its markup, BYOK platform fee), at the rates
    in force when each call was made."""
    today = tenant_local_date(tenant, timezone.now())
    rows = UsageRecord.objects.filter(tenant=tenant, local_date__gte=today.replace(day=1), local_date__lte=today)
    return rows.aggregate(billed=Sum("billed"))["billed"] or Decimal("0")

"""The admin dashboard's figures: plain query functions returning plain data (dicts, lists, Decimals).

Every query is an aggregate restricted to a short range of an indexed column, so the dashboard stays fast on a
large ledger: the ledger by `local_date` (index `usage_day_tenant`), attempts by `created_at` (indexed), messages
by `created_at` (indexed). How each figure is computed: docs/dashboard.md.

- `tenant_spend()`: per client, today and this month in the client's own time zone (as budgets and invoices count
  them): tokens against `daily_token_budget`, billed amount against `monthly_spend_cap`, list cost, and the cost
  of the same tokens on the savings reference model. At most three ledger queries (one per distinct local date
  the clients are on right now).
- `savings_reference()`: the model whose current price the savings are measured against, and that price.
- `model_figures()`: per provider and model over the last 24 h: requests, error rate, latency p50 / p95 (from
  `providers.health.health_summary`, probes left out), thumbs-up rate, cost per conversation.
- `credentials_needing_attention()` (and the open circuits: providers.health.circuits_not_closed).
- `dashboard(user)`: all of it for one user; money figures only with `billing.view_usagerecord`.
"""

from __future__ import annotations

import logging

import zoneinfo
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, DecimalField, ExpressionWrapper, F, Q, Sum, Value
from django.db.models.expressions import Case, When
from django.db.models.lookups import GreaterThan
from django.utils import timezone

from billing.models import KeyOwnership, UsageRecord
from conversations.models import Feedback
from providers.errors import NoPriceError
from providers.health import circuits_not_closed, health_summary
from providers.state import UNAVAILABLE
from providers.models import COST_PLACES, MTOK, Credential, LLMModel, ModelPrice, ModelTier, price_in_force
from routing.models import RoutingPolicy
from routing.planner import model_prices, policy_rules, tier_models
from tenants.config_cache import config_scope
from tenants.models import Tenant

MONEY_PERMISSION = "billing.view_usagerecord"
MODEL_WINDOW = timedelta(hours=24)
HOUR = timedelta(hours=1)
ZERO = Decimal("0")
TOKENS = F("input_tokens") + F("output_tokens") + F("cached_input_tokens") + F("cache_write_tokens")
PROMPT_TOKENS = F("input_tokens") + F("cached_input_tokens") + F("cache_write_tokens")
_MONEY = DecimalField(max_digits=30, decimal_places=12)

log = logging.getLogger(__name__)


def can_see_money(user) -> bool:
    return bool(user and user.is_active and user.has_perm(MONEY_PERMISSION))


def _ratio(part, whole) -> float | None:
    return round(float(part) / float(whole), 6) if whole else None


def _cost(value) -> Decimal:
    return (value or ZERO).quantize(COST_PLACES)


# --------------------------------------------------------------------------------------------- savings reference

def savings_reference(*, now: datetime | None = None) -> tuple[LLMModel | None, ModelPrice | None]:
    """The model "premium alone" means for the savings figure, and its price in force, in this order:

    1. the agency default routing policy's first enabled rule that sends messages to the premium tier (the starter
       policy's "Escalation" rule): the head model of its target, or for a tier target the cheapest enabled premium
       model with a price (the one routing itself would try first);
    2. otherwise, the most expensive enabled model with a price in force (input + output per MTok).

    Read through the configuration cache (the planner's own lookups, prices included): no query per model."""
    now = now or timezone.now()

    def price(model: LLMModel) -> ModelPrice | None:
        try:
            return price_in_force(model, model_prices(model), now)
        except NoPriceError:
            return None

    with config_scope():
        policy = RoutingPolicy.objects.filter(is_agency_default=True).first()
        for rule in policy_rules(policy) if policy is not None else ():
            target = rule.target
            if target.model_id and target.model.tier == ModelTier.PREMIUM:
                return target.model, price(target.model)
            if target.tier == ModelTier.PREMIUM:
                for model in tier_models(ModelTier.PREMIUM):
                    if (found := price(model)) is not None:
                        return model, found
        enabled = LLMModel.objects.filter(is_enabled=True).select_related("provider").prefetch_related("prices")
        priced = [(model, found) for model in enabled if (found := price(model)) is not None]
    if not priced:
        return None, None
    return max(priced, key=lambda pair: pair[1].input_per_mtok + pair[1].output_per_mtok)


def _rate_expression(rates: dict[str, Decimal]):
    def term(field: str, rate: str):
        return F(field) * Value(rates[rate], output_field=_MONEY)

    return ExpressionWrapper(
        term("input_tokens", "input") + term("output_tokens", "output")
        + term("cached_input_tokens", "cached_input") + term("cache_write_tokens", "cache_write")
        + F("cache_write_1h_tokens") * Value(rates["cache_write_1h"] - rates["cache_write"], output_field=_MONEY),
        output_field=_MONEY,
    )


def reference_cost_expression(price: ModelPrice | None):
    """Per ledger row: its tokens at `price` (times one million; divide the sum by MTok). Long-prompt tiers follow
    ModelPrice.rates_for: a row whose prompt exceeds a tier's threshold is priced at that tier in full."""
    if price is None:
        return Value(ZERO, output_field=_MONEY)
    thresholds = sorted({int(t["above_input_tokens"]) for t in price.tiers or []}, reverse=True)
    base = _rate_expression(price.rates_for(0))
    if not thresholds:
        return base
    return Case(
        *[When(GreaterThan(PROMPT_TOKENS, n), then=_rate_expression(price.rates_for(n + 1))) for n in thresholds],
        default=base, output_field=_MONEY,
    )


# --------------------------------------------------------------------------------------------- spend per client

def _local_today(tz_name: str, now: datetime) -> date:
    return now.astimezone(zoneinfo.ZoneInfo(tz_name or "UTC")).date()


def tenant_spend(*, now: datetime | None = None, reference_price: ModelPrice | None = None) -> dict:
    """Per active client: today and this month in its own time zone. Returns {"tenants": [...], "totals": {...}};
    tenants are sorted by this month's billed amount, highest first."""
    now = now or timezone.now()
    tenants = list(Tenant.objects.filter(is_active=True).values(
        "id", "name", "slug", "timezone", "daily_token_budget", "monthly_spend_cap",
    ))
    by_day: dict[date, list[int]] = defaultdict(list)
    today_of: dict[int, date] = {}
    for t in tenants:
        today_of[t["id"]] = day = _local_today(t["timezone"], now)
        by_day[day].append(t["id"])

    reference = reference_cost_expression(reference_price)
    sums: dict[tuple[int, str], dict] = {}
    for day, ids in by_day.items():
        on_day = Q(local_date=day)
        rows = (
            UsageRecord.objects.filter(local_date__gte=day.replace(day=1), local_date__lte=day, tenant_id__in=ids)
            .values("tenant_id", "ownership")
            .annotate(
                calls_today=Count("id", filter=on_day), calls_month=Count("id"),
                tokens_today=Sum(TOKENS, filter=on_day), tokens_month=Sum(TOKENS),
                cost_today=Sum("cost", filter=on_day), cost_month=Sum("cost"),
                billed_today=Sum("billed", filter=on_day), billed_month=Sum("billed"),
                ref_today=Sum(reference, filter=on_day), ref_month=Sum(reference),
            )
            .order_by()
        )
        for row in rows:
            sums[(row["tenant_id"], row["ownership"])] = row

    out = []
    for t in tenants:
        agency = sums.get((t["id"], KeyOwnership.AGENCY), {})
        byok = sums.get((t["id"], KeyOwnership.BYOK), {})

        def total(key: str, agency=agency, byok=byok):
            return (agency.get(key) or 0) + (byok.get(key) or 0)

        tokens_today, budget, cap = int(total("tokens_today")), t["daily_token_budget"], t["monthly_spend_cap"]
        billed_today, billed_month = Decimal(total("billed_today")), Decimal(total("billed_month"))
        cost_today, cost_month = _cost(total("cost_today")), _cost(total("cost_month"))
        premium_today, premium_month = _cost(total("ref_today") / MTOK), _cost(total("ref_month") / MTOK)
        out.append({
            "id": t["id"], "name": t["name"], "slug": t["slug"], "timezone": t["timezone"], "today": today_of[t["id"]],
            "calls_today": int(total("calls_today")), "calls_month": int(total("calls_month")),
            "tokens_today": tokens_today, "tokens_month": int(total("tokens_month")),
            "daily_token_budget": budget, "budget_used": _ratio(tokens_today, budget),
            "billed_today": billed_today, "billed_month": billed_month,
            "monthly_spend_cap": cap, "cap_used": _ratio(billed_month, cap),
            "cost_today": cost_today, "cost_month": cost_month,
            "premium_cost_today": premium_today, "premium_cost_month": premium_month,
            "saved_today": premium_today - cost_today if reference_price else None,
            "saved_month": premium_month - cost_month if reference_price else None,
        })
    out.sort(key=lambda r: (-r["billed_month"], r["name"]))

    def add(key: str):
        values = [r[key] for r in out if r[key] is not None]
        return sum(values, ZERO) if values else None

    totals = {key: add(key) for key in (
        "billed_today", "billed_month", "cost_today", "cost_month", "premium_cost_today", "premium_cost_month",
        "saved_today", "saved_month",
    )}
    totals["tokens_today"] = sum(r["tokens_today"] for r in out)
    totals["saved_month_share"] = (
        _ratio(totals["saved_month"], totals["premium_cost_month"]) if totals["saved_month"] is not None else None
    )
    return {"tenants": out, "totals": totals}


# --------------------------------------------------------------------------------------------- per model

def model_figures(*, now: datetime | None = None, window: timedelta = MODEL_WINDOW) -> list[dict]:
    """Per provider and model over the last `window` (default 24 h). Attempts: requests, errors, error_rate,
    latency_p50_ms / latency_p95_ms of the ok attempts (health probes left out). Feedback on the replies the model
    wrote in the window: thumbs_up / feedback / thumbs_up_rate. Ledger: calls, cost, conversations,
    cost_per_conversation (its cost on calls that belong to a conversation / the distinct conversations it served).
    A model appears when it has any of the three in the window."""
    end = now or timezone.now()
    start = end - window
    health = {row["model_id"]: row for row in health_summary(window, now=end, include_probes=False)}
    # The last hour too, and availability over both windows with the health probes counted (they are the signal
    # when a model has no traffic).
    hour = {row["model_id"]: row for row in health_summary(HOUR, now=end, include_probes=False)}
    up = {name: {row["model_id"]: row["availability"] for row in health_summary(span, now=end)}
          for name, span in (("day", window), ("hour", HOUR))}

    # local_date is within a day of the UTC date (UTC-12 .. UTC+14): it bounds the scan to the index range.
    ledger = {
        row["model_id"]: row
        for row in UsageRecord.objects.filter(
            local_date__gte=start.date() - timedelta(days=1), local_date__lte=end.date() + timedelta(days=1),
            created_at__gte=start, created_at__lte=end,
        ).values("model_id").annotate(
            calls=Count("id"), total_cost=Sum("cost"),
            conversation_cost=Sum("cost", filter=Q(conversation_id__isnull=False)),
            conversations=Count("conversation_id", distinct=True),
        ).order_by()
    }
    feedback = {
        row["message__model_id"]: row
        for row in Feedback.objects.filter(
            message__created_at__gte=start, message__created_at__lte=end, message__model__isnull=False,
        ).values("message__model_id").annotate(total=Count("id"), up=Count("id", filter=Q(rating=1))).order_by()
    }
    ids = set(health) | set(ledger) | set(feedback) | set(up["day"])
    names = {m["id"]: m for m in LLMModel.objects.filter(pk__in=ids).values("id", "model_id", "display_name", "provider__kind")}
    out = []
    for pk in ids:
        h, lg, fb, m = health.get(pk, {}), ledger.get(pk, {}), feedback.get(pk, {}), names.get(pk, {})
        last_hour = hour.get(pk, {})
        conversations = lg.get("conversations") or 0
        out.append({
            "model_pk": pk, "provider": m.get("provider__kind") or h.get("provider", ""),
            "model": m.get("model_id") or h.get("model", ""), "display_name": m.get("display_name", ""),
            "requests": h.get("requests", 0), "errors": h.get("errors", 0),
            "error_rate": h.get("error_rate") if h else None,
            "latency_p50_ms": h.get("latency_p50_ms"), "latency_p95_ms": h.get("latency_p95_ms"),
            "availability": up["day"].get(pk), "hour": {
                "requests": last_hour.get("requests", 0), "error_rate": last_hour.get("error_rate"),
                "latency_p50_ms": last_hour.get("latency_p50_ms"), "latency_p95_ms": last_hour.get("latency_p95_ms"),
                "availability": up["hour"].get(pk),
            },
            "feedback": fb.get("total", 0), "thumbs_up": fb.get("up", 0), "thumbs_up_rate": _ratio(fb.get("up", 0), fb.get("total", 0)),
            "calls": lg.get("calls", 0), "cost": _cost(lg.get("total_cost")), "conversations": conversations,
            "cost_per_conversation": _cost(lg["conversation_cost"] / conversations) if conversations else None,
        })
    out.sort(key=lambda r: (r["provider"], r["model"]))
    return out


def provider_figures(models: list[dict]) -> list[dict]:
    """The model rows summed per provider: requests, errors, error rate, calls, cost (percentiles do not add up,
    so latency stays per model)."""
    acc: dict[str, dict] = {}
    for row in models:
        p = acc.setdefault(row["provider"], {"provider": row["provider"], "requests": 0, "errors": 0, "calls": 0, "cost": ZERO})
        p["requests"] += row["requests"]
        p["errors"] += row["errors"]
        p["calls"] += row["calls"]
        p["cost"] += row["cost"]
    for p in acc.values():
        p["error_rate"] = _ratio(p["errors"], p["requests"]) if p["requests"] else None
    return sorted(acc.values(), key=lambda p: p["provider"])


# --------------------------------------------------------------------------------------------- attention

def credentials_needing_attention() -> list[dict]:
    """Credentials that are disabled or flagged for staff (a provider rejected the key)."""
    rows = Credential.objects.filter(Q(is_enabled=False) | Q(needs_attention=True)).select_related("provider", "tenant")
    return [{
        "id": c.pk, "provider": c.provider.kind, "label": c.label, "owner": c.tenant.slug if c.tenant_id else "agency",
        "key_last4": c.key_last4, "is_enabled": c.is_enabled, "needs_attention": c.needs_attention,
        "reason": c.disabled_reason or c.last_error, "since": c.disabled_at or c.last_error_at,
    } for c in rows.order_by("-needs_attention", "provider__kind", "label")]


# --------------------------------------------------------------------------------------------- everything

def _breakers_or_none() -> list[dict] | None:
    """The circuits that are not closed, or None when the shared state (Redis) cannot be reached: the dashboard is
    most needed during an outage, so it must still render (the rest of it reads only the database)."""
    try:
        return circuits_not_closed()
    except UNAVAILABLE as exc:
        log.warning("dashboard: breaker state unavailable: %s", exc, extra={"throttle": True})
        return None


def dashboard(user, *, now: datetime | None = None) -> dict:
    """Everything the admin index shows to `user`. Without `billing.view_usagerecord` (superusers have it), only the
    health figures: no spend, no savings, no cost per conversation."""
    now = now or timezone.now()
    money = can_see_money(user)
    models = model_figures(now=now)
    data: dict = {
        "now": now, "money": money, "window_hours": int(MODEL_WINDOW.total_seconds() // 3600),
        "breakers": _breakers_or_none(), "credentials": credentials_needing_attention(),
    }
    providers = provider_figures(models)
    if money:
        reference, price = savings_reference(now=now)
        data["reference_model"] = reference
        data["reference_price"] = price
        data["spend"] = tenant_spend(now=now, reference_price=price)
    else:
        for row in models:
            del row["cost"], row["cost_per_conversation"]
        for row in providers:
            del row["cost"]
    data["models"], data["providers"] = models, providers
    data["charts"] = chart_data(data)
    return data


def chart_data(data: dict, limit: int = 15) -> dict:
    """What the charts draw (numbers as floats: for drawing only; the tables show the exact figures)."""
    models = [m for m in data["models"] if m["requests"]]
    charts: dict = {"latency": {
        "labels": [f"{m['provider']}:{m['model']}" for m in models],
        "p50": [m["latency_p50_ms"] for m in models], "p95": [m["latency_p95_ms"] for m in models],
        "error_rate": [round(100 * (m["error_rate"] or 0), 2) for m in models],
    }}
    if data["money"]:
        tenants = data["spend"]["tenants"][:limit]
        charts["spend"] = {
            "labels": [t["name"] for t in tenants],
            "billed_month": [float(t["billed_month"]) for t in tenants],
            "cap": [float(t["monthly_spend_cap"]) if t["monthly_spend_cap"] is not None else None for t in tenants],
        }
        budgeted = [t for t in data["spend"]["tenants"] if t["daily_token_budget"]][:limit]
        charts["budget"] = {
            "labels": [t["name"] for t in budgeted],
            "used_percent": [round(100 * (t["budget_used"] or 0), 2) for t in budgeted],
        }
        totals = data["spend"]["totals"]
        if data.get("reference_price") is not None:
            charts["savings"] = {
                "labels": ["Actual (routed)", f"All on {data['reference_model'].model_id}"],
                "values": [float(totals["cost_month"]), float(totals["premium_cost_month"])],
            }
    return charts

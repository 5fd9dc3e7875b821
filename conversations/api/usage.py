"""`GET /api/v1/usage`: the tenant's own usage, cost and budget left, by day and model."""

from datetime import date, timedelta
from decimal import Decimal

from django.db.models import Count, Sum
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.budget import budget_usage, seconds_until_reset
from billing.invoicing import to_cents
from billing.models import UsageRecord
from billing.services import month_spend, tenant_local_date
from providers.state import UNAVAILABLE
from conversations.access import access_assistant
from conversations.api.origins import check_origin
from conversations.api.views import scoped_assistant
from providers.models import cost_text

MAX_DAYS = 366


class UsageView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("from", date, description="first day (tenant time zone), default 30 days ago"),
                    OpenApiParameter("to", date, description="last day, default today (`end` is accepted too)")],
        summary="Your usage, cost and budget left, by day and model",
    )
    def get(self, request: Request) -> Response:
        tenant = request.user.tenant
        # Not about one assistant: the key's (the one it is limited to, else the tenant's default, as /v1 uses).
        check_origin(request, scoped_assistant(request) or access_assistant(tenant=tenant))
        today = tenant_local_date(tenant, timezone.now())
        try:
            end = date.fromisoformat(request.query_params.get("to") or request.query_params.get("end") or today.isoformat())
            start = date.fromisoformat(request.query_params.get("from") or (end - timedelta(days=29)).isoformat())
        except (ValueError, OverflowError):
            raise serializers.ValidationError({"from": "'from' and 'to' are dates, YYYY-MM-DD"}) from None
        if start > end or (end - start).days > MAX_DAYS:
            raise serializers.ValidationError({"from": f"must be on or before 'to', at most {MAX_DAYS} days apart"})
        rows = (
            UsageRecord.objects.filter(tenant=tenant, local_date__gte=start, local_date__lte=end)
            .values("local_date", "provider_kind", "model_name", "ownership")
            .annotate(
                calls=Count("id"), input_tokens=Sum("input_tokens"), output_tokens=Sum("output_tokens"),
                cached_input_tokens=Sum("cached_input_tokens"), cache_write_tokens=Sum("cache_write_tokens"),
                reasoning_tokens=Sum("reasoning_tokens"), cost=Sum("cost"), billed=Sum("billed"),
            )
            .order_by("local_date", "provider_kind", "model_name")
        )
        days: dict[str, dict] = {}
        for row in rows:
            day = days.setdefault(row["local_date"].isoformat(), {"day": row["local_date"].isoformat(), "total_tokens": 0, "cost": Decimal("0"), "models": []})
            tokens = row["input_tokens"] + row["output_tokens"] + row["cached_input_tokens"] + row["cache_write_tokens"]
            day["models"].append({
                "provider": row["provider_kind"], "model": row["model_name"], "key": row["ownership"], "calls": row["calls"],
                "input_tokens": row["input_tokens"], "output_tokens": row["output_tokens"],
                "cached_input_tokens": row["cached_input_tokens"], "cache_write_tokens": row["cache_write_tokens"],
                "reasoning_tokens": row["reasoning_tokens"], "total_tokens": tokens,
                "cost": cost_text(row["cost"]), "billed": cost_text(row["billed"]),
            })
            day["total_tokens"] += tokens
            day["cost"] += row["cost"]
        for day in days.values():
            day["cost"] = cost_text(day["cost"])
        try:
            used, reserved = budget_usage(tenant)
        except UNAVAILABLE:  # Redis unreachable: the ledger figures stand; today's live counters are unknown
            used = reserved = None
        budget = tenant.daily_token_budget
        return Response({
            "tenant": tenant.slug,
            "currency": "USD",
            "timezone": tenant.timezone,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "budget": {
                "daily_tokens": budget,
                "used_today": used,
                "reserved": reserved,
                "remaining": max(0, budget - used - reserved) if budget and used is not None else None,
                "resets_in_seconds": seconds_until_reset(tenant),
            },
            "month": {"billed": str(to_cents(month_spend(tenant))), "cap": str(tenant.monthly_spend_cap) if tenant.monthly_spend_cap is not None else None},
            "days": list(days.values()),
        })

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Count, Sum
from django.utils import timezone

from billing.models import DailyUsage, KeyOwnership, UsageRecord
from billing.rollup import rollup_usage
from billing.services import usage_record_append, usage_record_build
from billing.tasks import rollup_yesterday
from providers.services import credential_set
from providers.types import ChatResult, FinishReason, Usage
from tenants.services import tenant_create

pytestmark = pytest.mark.django_db

SUMS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")
KEY = ("tenant_id", "day", "provider_kind", "model_id", "ownership")


@pytest.fixture
def tenants():
    acme, _ = tenant_create(slug="acme", name="Acme")
    acme.markup_percent, acme.byok_fee_percent = Decimal("25"), Decimal("3.5")
    acme.save()
    globex, _ = tenant_create(slug="globex", name="Globex", timezone_name="America/Los_Angeles")
    return acme, globex


def call(tenant, model, at, credential=None, n=1, **tokens):
    usage = Usage(**{"input_tokens": 1234 * n, "output_tokens": 321 * n, **tokens})
    result = ChatResult(text="ok", finish_reason=FinishReason.STOP, usage=usage, model=model.model_id)
    return usage_record_append(usage_record_build(tenant=tenant, model=model, credential=credential, result=result, at=at))


def ledger_by_key():
    rows = (
        UsageRecord.objects.values("tenant_id", "local_date", "provider_kind", "model_id", "ownership")
        .annotate(calls=Count("id"), provider_cost=Sum("cost"), **{f: Sum(f) for f in SUMS})
    )
    return {(r["tenant_id"], r["local_date"], r["provider_kind"], r["model_id"], r["ownership"]):
            (r["calls"], r["provider_cost"], *[r[f] for f in SUMS]) for r in rows}


def rollup_by_key():
    return {tuple(r[k] for k in KEY): (r["calls"], r["provider_cost"], *[r[f] for f in SUMS], r["billed_amount"])
            for r in DailyUsage.objects.values(*KEY, "calls", "provider_cost", "billed_amount", *SUMS)}


@pytest.fixture
def month_of_calls(models, tenants):
    acme, globex = tenants
    byok = credential_set(kind="anthropic", key="sk-ant-acme-own", tenant=acme)
    for day in range(1, 31):
        at = datetime(2026, 11, day, 12, 0, tzinfo=UTC)
        call(acme, models["haiku"], at, n=day, cached_input_tokens=50 * day, cache_write_tokens=7)
        call(acme, models["mini"], at + timedelta(minutes=1), n=3)
        call(acme, models["haiku"], at + timedelta(minutes=2), credential=byok, n=2)
        call(globex, models["mini"], at, n=day % 7 + 1, reasoning_tokens=11)
    # Late evening in Los Angeles on Nov 30 is already December in UTC.
    call(globex, models["mini"], datetime(2026, 12, 1, 6, 0, tzinfo=UTC))
    return acme, globex


def test_it_rolls_the_ledger_up_exactly(month_of_calls):
    rollup_usage(start=date(2026, 11, 1), end=date(2026, 11, 30))

    ledger = ledger_by_key()
    rollup = {key: value[:-1] for key, value in rollup_by_key().items()}
    assert rollup == ledger
    assert DailyUsage.objects.aggregate(s=Sum("provider_cost"))["s"] == UsageRecord.objects.aggregate(s=Sum("cost"))["s"]


def test_it_counts_days_in_the_tenants_time_zone(month_of_calls):
    _, globex = month_of_calls
    rollup_usage(start=date(2026, 11, 30))

    late = DailyUsage.objects.get(tenant=globex, day=date(2026, 11, 30))
    assert late.calls == 2  # the 12:00 UTC call and the 06:00 UTC call of Dec 1


def test_it_bills_markup_on_agency_keys_and_only_the_fee_on_byok(month_of_calls):
    acme, _ = month_of_calls
    rollup_usage(start=date(2026, 11, 3))

    rows = {r.ownership: r for r in DailyUsage.objects.filter(tenant=acme, day=date(2026, 11, 3), provider_kind="anthropic")}
    assert rows[KeyOwnership.AGENCY].billed_amount == (rows[KeyOwnership.AGENCY].provider_cost * Decimal("1.25")).quantize(Decimal("1e-8"))
    assert rows[KeyOwnership.BYOK].billed_amount == (rows[KeyOwnership.BYOK].provider_cost * Decimal("0.035")).quantize(Decimal("1e-8"))


def test_it_is_idempotent_and_picks_up_late_rows(month_of_calls, models):
    acme, _ = month_of_calls
    november = {"start": date(2026, 11, 1), "end": date(2026, 11, 30)}
    rollup_usage(**november)
    first = rollup_by_key()
    rollup_usage(**november)
    assert rollup_by_key() == first

    # A row that arrives late for Nov 10 (e.g. an async reply settled after midnight).
    call(acme, models["mini"], datetime(2026, 11, 10, 23, 59, tzinfo=UTC), n=5)
    rollup_usage(**november)
    rerun = rollup_by_key()
    assert rerun != first
    DailyUsage.objects.all().delete()
    rollup_usage(**november)
    assert rollup_by_key() == rerun
    assert {k: v[:-1] for k, v in rerun.items()} == {k: v for k, v in ledger_by_key().items() if k[1].month == 11}


def test_it_rebuilds_only_the_days_asked(month_of_calls):
    rollup_usage(start=date(2026, 11, 1), end=date(2026, 11, 30))
    before = DailyUsage.objects.filter(day=date(2026, 11, 2)).values_list("pk", flat=True)
    before = set(before)

    rollup_usage(start=date(2026, 11, 1))

    assert set(DailyUsage.objects.filter(day=date(2026, 11, 2)).values_list("pk", flat=True)) == before


def test_the_nightly_task_rolls_up_yesterday(models, tenants):
    acme, _ = tenants
    yesterday = timezone.now() - timedelta(days=1)
    call(acme, models["haiku"], yesterday)

    rollup_yesterday.delay()

    row = DailyUsage.objects.get(tenant=acme)
    assert (row.day, row.calls) == (yesterday.date(), 1)


def test_rolling_up_one_tenant_leaves_the_others_rows_alone(month_of_calls, models):
    acme, globex = month_of_calls
    november = {"start": date(2026, 11, 1), "end": date(2026, 11, 30)}
    rollup_usage(**november)
    everything = rollup_by_key()
    call(acme, models["mini"], datetime(2026, 11, 10, 12, 0, tzinfo=UTC))  # a late row for each tenant
    call(globex, models["mini"], datetime(2026, 11, 10, 12, 0, tzinfo=UTC))

    rollup_usage(**november, tenant_ids=[acme.pk])

    after = rollup_by_key()
    assert {k: v for k, v in after.items() if k[0] == globex.pk} == {k: v for k, v in everything.items() if k[0] == globex.pk}
    acme_rollup = {k: v[:-1] for k, v in after.items() if k[0] == acme.pk}  # without billed_amount
    acme_ledger = {k: v for k, v in ledger_by_key().items() if k[0] == acme.pk and k[1].month == 11}
    assert acme_rollup == acme_ledger  # the late acme row counted
    assert acme_rollup != {k: v[:-1] for k, v in everything.items() if k[0] == acme.pk}

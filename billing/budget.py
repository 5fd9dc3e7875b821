"""Daily token budgets: reserve before a call, settle to the real usage after, in the shared state.

Counters (per tenant and tenant-local day):
- `budget:used:<tenant>:<day>` — tokens settled today (rebuildable from the ledger: `reconcile_budgets`).
- `budget:res:<tenant>:<day>:<minute>` — tokens reserved by calls in flight, bucketed by the minute the
  reservation was made. Each bucket expires after the reservation lease, so the reservations of a process
  that crashed disappear on their own; no sweeper is needed.

Reserving is one atomic step in the shared state (`incr_within`): read used + every live bucket, and add to this
minute's bucket only if the total stays within the budget; otherwise refuse. Concurrent callers can never all
pass: the budget is exceeded only by the difference between what running calls reserved (their estimate) and
what they really used. Settling is one atomic step too (`decr_and_incr`): take the reservation back from its
bucket (unless the bucket expired and took it along) and add the real usage to the day's counter.

The monthly spend cap (`Tenant.monthly_spend_cap`, billed USD) holds an estimated cost per call the same way, in
micro-dollars: `spend:res:<tenant>:<month>:<minute>` buckets. What was billed comes from the ledger, read *after*
the hold is placed: a call that finished before the hold is in the ledger (its row is committed before it lets go
of its own hold), and one still running holds its estimate. So two calls that together pass the cap never both
start; the cap is overshot only by what calls cost beyond their estimate.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal

from django.conf import settings
from django.db.models import F, Sum
from django.utils import timezone

from billing.models import UsageRecord
from billing.services import month_spend, tenant_day_bounds, tenant_local_date
from providers.state import UNAVAILABLE, shared_state
from tenants.models import Tenant

log = logging.getLogger(__name__)

BUCKET_SECONDS = 60
DAY_TTL = 2 * 24 * 3600


class BudgetExceeded(Exception):
    def __init__(self, tenant: Tenant, used: int, retry_after: int, asked: int = 0):
        self.tenant = tenant
        self.used = used
        self.retry_after = retry_after
        budget = tenant.daily_token_budget or 0
        resets = f"it resets at midnight {tenant.timezone}"
        if used < budget:  # room is left, but not for this call's prompt plus its longest possible reply
            message = (f"this request may use up to {asked} tokens (its prompt and max output), more than the {budget - used} "
                       f"left of today's budget of {budget}; ask for fewer output tokens (max_tokens), or wait: {resets}")
        else:
            message = f"daily token budget of {budget} reached ({used} used or reserved); {resets}"
        super().__init__(message)


class SpendCapReached(Exception):
    def __init__(self, tenant: Tenant, spent: Decimal, asked: Decimal, in_flight: Decimal, retry_after: int):
        self.retry_after = retry_after
        cap = tenant.monthly_spend_cap
        if spent >= cap:
            message = f"monthly spend cap of {cap} USD reached ({spent:.2f} USD billed this month)"
        else:
            held = f", {in_flight:.4f} USD of it held by calls still running" if in_flight else ""
            message = (f"this request may cost up to {asked:.4f} USD (its prompt and max output), more than the "
                       f"{cap - spent:.4f} USD left of this month's spend cap of {cap} USD{held}")
            if not in_flight:
                message += "; ask for fewer output tokens (max_tokens)"
        super().__init__(message)


@dataclass(frozen=True)
class Reservation:
    """What one call holds: tokens of the day's budget and an estimated cost against the month's spend cap."""

    tenant_id: int
    day: str
    bucket_key: str
    tokens: int
    id: str
    spend_key: str = ""
    spend_micros: int = 0

    @property
    def is_noop(self) -> bool:
        return self.tokens == 0 and self.spend_micros == 0


def _lease_seconds() -> int:
    return int(getattr(settings, "BUDGET_RESERVATION_SECONDS", settings.REPLY_LEASE_SECONDS))


def _used_key(tenant_id: int, day: str) -> str:
    return f"budget:used:{tenant_id}:{day}"


def _bucket_key(tenant_id: int, day: str, minute: int) -> str:
    return f"budget:res:{tenant_id}:{day}:{minute}"


def _spend_key(tenant_id: int, month: str, minute: int) -> str:
    return f"spend:res:{tenant_id}:{month}:{minute}"


def _live_minutes(now: float) -> range:
    current = int(now // BUCKET_SECONDS)
    return range(current - (_lease_seconds() // BUCKET_SECONDS + 2) + 1, current + 1)


def _live_bucket_keys(tenant_id: int, day: str, now: float) -> list[str]:
    return [_bucket_key(tenant_id, day, minute) for minute in _live_minutes(now)]


def _micros(amount: Decimal) -> int:
    return int((amount * 1_000_000).to_integral_value(rounding=ROUND_CEILING))


def budget_day(tenant: Tenant, at: datetime | None = None) -> str:
    """Today in the tenant's time zone, as the budget counters name it."""
    return tenant_local_date(tenant, at or timezone.now()).isoformat()


def seconds_until_reset(tenant: Tenant) -> int:
    _, end = tenant_day_bounds(tenant)
    return max(1, math.ceil((end - timezone.now()).total_seconds()))


def budget_usage(tenant: Tenant) -> tuple[int, int]:
    """(tokens settled today, tokens reserved by calls in flight)."""
    return budget_usage_many([tenant])[tenant.pk]


def budget_usage_many(tenants: list[Tenant]) -> dict[int, tuple[int, int]]:
    """`budget_usage` for many tenants in one round trip: {tenant id: (settled today, reserved in flight)}."""
    now = time.time()
    layout: list[tuple[int, int]] = []  # (tenant id, how many keys it takes)
    keys: list[str] = []
    for tenant in tenants:
        day = budget_day(tenant)
        tenant_keys = [_used_key(tenant.pk, day), *_live_bucket_keys(tenant.pk, day, now)]
        layout.append((tenant.pk, len(tenant_keys)))
        keys.extend(tenant_keys)
    values = shared_state().mget(keys) if keys else []
    out, position = {}, 0
    for tenant_id, count in layout:
        chunk = values[position:position + count]
        position += count
        out[tenant_id] = (int(chunk[0] or 0), sum(max(0, int(v or 0)) for v in chunk[1:]))
    return out


def budget_reserve(*, tenant: Tenant, tokens: int, cost: Decimal = Decimal("0")) -> Reservation:
    """Reserve `tokens` of today's budget and hold `cost` (the call's estimated billed cost, USD) against the month's
    spend cap: raises SpendCapReached or BudgetExceeded, holding nothing. Limits the tenant does not have are not
    counted (an unlimited tenant gets a no-op reservation)."""
    held = spend_reserve(tenant=tenant, cost=cost)
    if not tenant.daily_token_budget:
        return held
    day = held.day
    now = time.time()
    bucket = _bucket_key(tenant.pk, day, int(now // BUCKET_SECONDS))
    tokens = max(1, int(tokens))
    others = [_used_key(tenant.pk, day), *(k for k in _live_bucket_keys(tenant.pk, day, now) if k != bucket)]
    try:
        reserved, total = shared_state().incr_within(bucket, tokens, tenant.daily_token_budget, others,
                                                     ttl=_lease_seconds() + BUCKET_SECONDS)
    except BaseException:
        budget_release(reservation=held)
        raise
    if not reserved:
        budget_release(reservation=held)
        raise BudgetExceeded(tenant, total, seconds_until_reset(tenant), asked=tokens)
    return Reservation(tenant_id=tenant.pk, day=day, bucket_key=bucket, tokens=tokens, id=uuid.uuid4().hex,
                       spend_key=held.spend_key, spend_micros=held.spend_micros)


def spend_reserve(*, tenant: Tenant, cost: Decimal) -> Reservation:
    """Hold `cost` (USD, the call's estimated billed cost) against the tenant's monthly spend cap, or raise
    SpendCapReached. The returned reservation holds no tokens of the daily budget."""
    day = budget_day(tenant)
    if tenant.monthly_spend_cap is None:
        return Reservation(tenant_id=tenant.pk, day=day, bucket_key="", tokens=0, id="")
    now, month = time.time(), day[:7]
    minute = int(now // BUCKET_SECONDS)
    bucket, asked, cap = _spend_key(tenant.pk, month, minute), max(1, _micros(cost)), _micros(tenant.monthly_spend_cap)
    others = [_spend_key(tenant.pk, month, m) for m in _live_minutes(now) if m != minute]
    held, in_flight = shared_state().incr_within(bucket, asked, cap, others, ttl=_lease_seconds() + BUCKET_SECONDS)
    reservation = Reservation(tenant_id=tenant.pk, day=day, bucket_key="", tokens=0, id=uuid.uuid4().hex,
                              spend_key=bucket if held else "", spend_micros=asked if held else 0)
    # Read after the hold: a call that let go of its hold before it was placed has its ledger row committed.
    spent = month_spend(tenant)
    others_in_flight = in_flight - asked if held else in_flight
    if held and _micros(spent) + in_flight <= cap:
        return reservation
    budget_release(reservation=reservation)
    # Calls in flight may cost less than they hold: worth retrying soon. Otherwise not before next month.
    soon = _micros(spent) + asked <= cap
    raise SpendCapReached(tenant, spent, Decimal(asked) / 1_000_000, Decimal(others_in_flight) / 1_000_000,
                          retry_after=5 if soon else seconds_until_next_month(tenant))


def seconds_until_next_month(tenant: Tenant) -> int:
    start, _ = tenant_day_bounds(tenant)
    next_month = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return max(1, math.ceil((next_month - timezone.now()).total_seconds()))


def budget_release(*, reservation: Reservation) -> None:
    """Give a reservation back, in one atomic step each for the tokens and the held cost: budget_settle with nothing
    used (only while its bucket exists; an expired bucket took the reservation with it)."""
    if reservation.tokens:
        shared_state().decr_and_incr(reservation.bucket_key, reservation.tokens, _used_key(reservation.tenant_id, reservation.day),
                                     0, ttl=DAY_TTL)
    _spend_release(reservation)


def _spend_release(reservation: Reservation) -> None:
    """Let go of the held cost: the call is in the ledger now (or never billed). A bucket that expired took it along
    (adding 0 to it recreates it empty, expiring with the lease)."""
    if reservation.spend_micros:
        shared_state().decr_and_incr(reservation.spend_key, reservation.spend_micros, reservation.spend_key, 0,
                                     ttl=_lease_seconds() + BUCKET_SECONDS)


def budget_renew(*, reservation: Reservation) -> Reservation:
    """Move what a call holds into this minute's buckets, one atomic step each, for a call that outlives the
    reservation lease (a long stream): its buckets would expire, or leave the window of live buckets, while it
    still runs. Returns the reservation to settle or release from now on (the same one if the state is down)."""
    if reservation.is_noop:
        return reservation
    now = time.time()
    minute, ttl, state = int(now // BUCKET_SECONDS), _lease_seconds() + BUCKET_SECONDS, shared_state()
    bucket = _bucket_key(reservation.tenant_id, reservation.day, minute) if reservation.tokens else ""
    spend_key = _spend_key(reservation.tenant_id, reservation.day[:7], minute) if reservation.spend_micros else ""
    try:
        if bucket:
            state.decr_and_incr(reservation.bucket_key, reservation.tokens, bucket, reservation.tokens, ttl=ttl)
        if spend_key:
            state.decr_and_incr(reservation.spend_key, reservation.spend_micros, spend_key, reservation.spend_micros, ttl=ttl)
    except UNAVAILABLE as exc:
        log.warning("reservation %s not renewed (shared state unavailable: %s)", reservation.id, exc, extra={"throttle": True})
        return reservation
    return replace(reservation, bucket_key=bucket, spend_key=spend_key)


def budget_settle(*, reservation: Reservation, tenant: Tenant, tokens_used: int, day: str | None = None) -> int | None:
    """Swap the reservation for the real usage, in one atomic step. Returns the tokens used today after this call, or
    None if the shared state could not be reached: the call is already in the ledger, so that is logged, never raised,
    and the counter is rebuilt from the ledger (`reconcile_budgets`); the reservation expires with its bucket.

    The usage counts on `day` (default: today, when the call completed), the tenant-local day of its ledger row, also
    for a call reserved before the tenant's midnight: the counter and the ledger agree on every day."""
    try:
        _spend_release(reservation)
        day = day or budget_day(tenant)
        return shared_state().decr_and_incr(reservation.bucket_key, reservation.tokens, _used_key(tenant.pk, day),
                                            int(tokens_used), ttl=DAY_TTL)
    except UNAVAILABLE as exc:
        log.error("tenant %s: %s tokens not added to today's budget counter (shared state unavailable: %s)",
                  tenant.slug, tokens_used, exc, extra={"throttle": True})
        return None


def budget_rebuild(*, tenant: Tenant) -> int:
    """Set today's settled counter from the ledger (the source of truth). Reservations are left alone."""
    day = tenant_local_date(tenant, timezone.now())
    total = UsageRecord.objects.filter(tenant=tenant, local_date=day).aggregate(
        total=Sum(F("input_tokens") + F("output_tokens") + F("cached_input_tokens") + F("cache_write_tokens"))
    )["total"] or 0
    shared_state().set(_used_key(tenant.pk, day.isoformat()), int(total), ttl=DAY_TTL)
    return int(total)

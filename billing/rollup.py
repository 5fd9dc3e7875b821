"""Nightly cost allocation: the ledger rolled up into DailyUsage, in one set-based statement per run.

Delete-and-insert inside one transaction makes it idempotent: running it twice, or again after late rows
arrive, gives the same rows, and a day's roll-up equals the sum of that day's ledger exactly (no rounding
happens here; invoices round to the cent).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from django.db import connection, transaction
from django.utils import timezone

from billing.models import DailyUsage, UsageRecord

# Billed amount: every ledger row carries what it is billed (agency keys: cost + markup; BYOK: the platform fee), at
# the client's rates when the call was made; a day with a change of rate gets a row per rate.
ROLLUP_SQL = """
INSERT INTO {daily} (tenant_id, day, provider_kind, model_id, ownership, billed_percent, calls,
                     input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens,
                     reasoning_tokens, provider_cost, billed_amount, computed_at)
SELECT u.tenant_id, u.local_date, u.provider_kind, u.model_id, u.ownership, u.billed_percent, COUNT(*),
       SUM(u.input_tokens), SUM(u.output_tokens), SUM(u.cached_input_tokens), SUM(u.cache_write_tokens),
       SUM(u.cache_write_1h_tokens), SUM(u.reasoning_tokens), SUM(u.cost), SUM(u.billed), %s
FROM {ledger} u
WHERE u.local_date >= %s AND u.local_date <= %s {only_tenants}
GROUP BY u.tenant_id, u.local_date, u.provider_kind, u.model_id, u.ownership, u.billed_percent
"""
# Enough memory for the month's groups to be hashed in one pass (PostgreSQL's default, 4 MB, makes it sort a
# month's ledger instead). Local to the roll-up's transaction.
ROLLUP_WORK_MEM = "256MB"
ROLLUP_LOCK_KEY = 0x41480001  # pg_advisory_xact_lock key of the roll-up ("AH" 0001)


def rollup_usage(*, start: date, end: date | None = None, tenant_ids: Iterable[int] | None = None) -> int:
    """Rebuild DailyUsage for the days start..end (inclusive), for every tenant or only `tenant_ids` (one client's
    invoice re-rolls that client's rows, not everyone's). Returns the number of roll-up rows."""
    end = end or start
    ids = sorted(set(tenant_ids)) if tenant_ids is not None else None
    sql = ROLLUP_SQL.format(
        daily=DailyUsage._meta.db_table, ledger=UsageRecord._meta.db_table,
        only_tenants="" if ids is None else "AND u.tenant_id IN ({})".format(", ".join(["%s"] * len(ids)) or "NULL"),
    )
    stale = DailyUsage.objects.filter(day__gte=start, day__lte=end)
    if ids is not None:
        stale = stale.filter(tenant_id__in=ids)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One roll-up at a time (nightly task, generate_invoices, the admin): two concurrent delete-then-insert
            # runs over the same days otherwise both insert and the second fails on uniq_daily_usage.
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ROLLUP_LOCK_KEY])
            cursor.execute(f"SET LOCAL work_mem = '{ROLLUP_WORK_MEM}'")
        stale.delete()
        cursor.execute(sql, [timezone.now(), start, end, *(ids or [])])
        return cursor.rowcount

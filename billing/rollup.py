"""Nightly cost allocation: the ledger rolled up into DailyUsage, in one set-based statement per run.

Delete-and-insert inside one transaction makes it idempotent: running it twice, or again after late rows
arrive, gives the same rows, and a day's roll-up equals the sum of that day's ledger exactly (no rounding
happens here; invoices round to the cent).
"""

from __future__ import annotations

from datetime import date

from django.db import connection, transaction
from django.utils import timezone

from billing.models import DailyUsage, UsageRecord
from tenants.models import Tenant

# Billed amount: agency keys pay provider cost + markup; BYOK pays only the platform fee on list cost.
ROLLUP_SQL = """
INSERT INTO {daily} (tenant_id, day, provider_kind, model_id, ownership, calls,
                     input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens,
                     provider_cost, billed_amount, computed_at)
SELECT u.tenant_id, u.local_date, u.provider_kind, u.model_id, u.ownership, COUNT(*),
       SUM(u.input_tokens), SUM(u.output_tokens), SUM(u.cached_input_tokens), SUM(u.cache_write_tokens), SUM(u.reasoning_tokens),
       SUM(u.cost),
       CAST(SUM(u.cost) * CASE WHEN u.ownership = 'agency' THEN 1 + t.markup_percent / 100 ELSE t.byok_fee_percent / 100 END
            AS DECIMAL(18, 8)),
       %s
FROM {ledger} u JOIN {tenant} t ON t.id = u.tenant_id
WHERE u.local_date >= %s AND u.local_date <= %s
GROUP BY u.tenant_id, u.local_date, u.provider_kind, u.model_id, u.ownership, t.markup_percent, t.byok_fee_percent
"""


def rollup_usage(*, start: date, end: date | None = None) -> int:
    """Rebuild DailyUsage for the days start..end (inclusive). Returns the number of roll-up rows."""
    end = end or start
    sql = ROLLUP_SQL.format(daily=DailyUsage._meta.db_table, ledger=UsageRecord._meta.db_table, tenant=Tenant._meta.db_table)
    with transaction.atomic():
        DailyUsage.objects.filter(day__gte=start, day__lte=end).delete()
        with connection.cursor() as cursor:
            cursor.execute(sql, [timezone.now(), start, end])
            return cursor.rowcount

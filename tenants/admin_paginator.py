"""A paginator for the admin's large tables (the ledger, attempt logs, messages): it never COUNTs millions of rows.

Django's changelist asks its paginator for `count` on every page; `COUNT(*)` over a table of tens of millions of
rows takes seconds on PostgreSQL. Here the count is:

- exact when it is small: `SELECT COUNT(*) FROM (... LIMIT cap + 1)` stops after `cap + 1` rows;
- for an unfiltered table past the cap, PostgreSQL's own estimate (`pg_class.reltuples`, kept by autovacuum);
- otherwise the cap: staff see "10,000+" pages' worth and narrow the filters or the dates.

Use it with `show_full_result_count = False` (else the changelist runs its own unfiltered COUNT).

It lives in the lowest app so that every app's admin may use it (apps import only downwards).
"""

from __future__ import annotations

from django.conf import settings
from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property


def count_cap() -> int:
    return int(getattr(settings, "ADMIN_COUNT_CAP", 10_000))


def table_estimate(model, using: str) -> int | None:
    """PostgreSQL's row estimate for the model's table, or None (other databases, never analysed)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:  # -1: never vacuumed or analysed (PostgreSQL 14+)
        return None
    return int(row[0])


class EstimatedCountPaginator(Paginator):
    """`count` is exact up to `count_cap()` rows, an estimate (unfiltered) or the cap (filtered) beyond."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not hasattr(queryset, "query"):  # a list, not a queryset
            return len(queryset)
        cap = count_cap()
        bounded = queryset.order_by()[: cap + 1].count()
        self.is_estimate = bounded > cap
        if not self.is_estimate:
            return bounded
        if not queryset.query.where:
            estimate = table_estimate(queryset.model, queryset.db)
            if estimate is not None:
                return max(estimate, cap)
        return cap

    is_estimate = False

#!/usr/bin/env python
"""Billing benchmark: the nightly roll-up of 1 million ledger rows and a month's invoices for 1,000 tenants.

    make bench-billing                                  # or: .venv/bin/python bench/billing_bench.py
    .venv/bin/python bench/billing_bench.py --rows 200000 --tenants 200   # a quicker run

What it does (PostgreSQL on 127.0.0.1, a database of its own):

1. (Re)creates the database `agencyhub_bench_billing`, migrates it, loads the model catalogue, creates the
   tenants (markups 0-45 %, a BYOK platform fee on every third) and writes the ledger rows for one month
   with one INSERT ... SELECT generate_series (6 priced models, a fifth of the calls on BYOK keys, token
   counts varied per row, cost from each model's list price).
2. Baseline, in the same run: one sequential scan of the month's ledger (`SELECT COUNT(*), SUM(cost), ...`),
   the floor any roll-up has to pay, and a Python roll-up (the ORM streaming rows into a dict) on a slice of
   the ledger, scaled to the full size.
3. Times `rollup_usage` for the month, runs it a second time (idempotency: identical rows), and checks that
   each day's roll-up equals that day's ledger to the cent.
4. Times `invoices_generate` for the month (it re-rolls the month first, as the beat task does; both parts are
   reported), checks the invoice totals against the roll-ups, then times issuing every invoice (gapless
   numbers) and rendering a sample of PDFs and CSVs.
5. Prints a table and writes bench/results/billing.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DB_NAME = "agencyhub_bench_billing"
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
MONTH = date(2026, 10, 1)
DAYS = 31
CATALOG_AT = datetime(2026, 9, 1, tzinfo=UTC)
MODELS = [  # (provider kind, model id): priced in the catalogue
    ("anthropic", "claude-haiku-4-5"), ("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o"), ("openrouter", "meta-llama/llama-3.3-70b-instruct"), ("openrouter", "google/gemini-2.5-flash"),
]

LEDGER_SQL = """
WITH t AS (SELECT array_agg(id ORDER BY id) AS ids, array_agg(markup_percent ORDER BY id) AS markups,
                  array_agg(byok_fee_percent ORDER BY id) AS fees FROM tenants_tenant),
     m AS (SELECT array_agg(m.id ORDER BY m.id) AS ids, array_agg(p.id ORDER BY m.id) AS prices,
                  array_agg(pr.kind ORDER BY m.id) AS kinds, array_agg(m.model_id ORDER BY m.id) AS names,
                  array_agg(p.input_per_mtok ORDER BY m.id) AS input_rates,
                  array_agg(p.output_per_mtok ORDER BY m.id) AS output_rates
           FROM providers_llmmodel m JOIN providers_provider pr ON pr.id = m.provider_id
           JOIN providers_modelprice p ON p.model_id = m.id
           WHERE m.id = ANY(%(model_ids)s) AND p.id = (SELECT id FROM providers_modelprice WHERE model_id = m.id ORDER BY valid_from DESC LIMIT 1)),
     g AS (SELECT n, 1 + n %% cardinality(t.ids) AS ti, 1 + (n / 7) %% cardinality(m.ids) AS mi,
                  100 + (n * 37) %% 4000 AS input_tokens, 20 + (n * 53) %% 800 AS output_tokens,
                  %(month)s::timestamptz + make_interval(secs => (n * 2654435761) %% (%(days)s * 86400)) AS at
           FROM generate_series(1, %(rows)s) AS n, t, m),
     c AS (SELECT g.*, g.n %% 5 = 0 AS byok,
                  CAST((g.input_tokens * m.input_rates[g.mi] + g.output_tokens * m.output_rates[g.mi]) / 1000000 AS DECIMAL(18, 8)) AS cost
           FROM g, m)
INSERT INTO billing_usagerecord (tenant_id, provider_kind, model_id, model_name, ownership, input_tokens, output_tokens,
    cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, price_id, cost, billed_percent, billed,
    usage_estimated, latency_ms, request_id, created_at, local_date)
SELECT t.ids[c.ti], m.kinds[c.mi], m.ids[c.mi], m.names[c.mi], CASE WHEN c.byok THEN 'byok' ELSE 'agency' END,
       c.input_tokens, c.output_tokens, 0, 0, 0, 0, m.prices[c.mi], c.cost,
       CASE WHEN c.byok THEN t.fees[c.ti] ELSE t.markups[c.ti] END,
       CAST(c.cost * CASE WHEN c.byok THEN t.fees[c.ti] / 100 ELSE 1 + t.markups[c.ti] / 100 END AS DECIMAL(18, 8)),
       false, 300, '', c.at, CAST(c.at AT TIME ZONE 'UTC' AS date)
FROM c, t, m
"""


def run(cmd: list[str], env: dict[str, str]) -> None:
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def database_create() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def timed(label: str, fn, *args, **kwargs):
    print(f"  {label} ...", end="", flush=True, file=sys.stderr)
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = time.perf_counter() - started
    print(f" {seconds:.2f} s", file=sys.stderr)
    return result, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="ledger rows in the month (default 1,000,000)")
    parser.add_argument("--tenants", type=int, default=1000, help="tenants with usage (default 1,000)")
    parser.add_argument("--python-slice", type=int, default=100_000, help="rows the Python baseline rolls up")
    parser.add_argument("--pdf-sample", type=int, default=20, help="invoices rendered to PDF and CSV")
    args = parser.parse_args()

    env = {**os.environ, "DATABASE_URL": DATABASE_URL, "REDIS_URL": "", "DJANGO_SETTINGS_MODULE": "agencyhub.settings"}
    env.setdefault("SECRET_KEY", "bench-only-not-secret")
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))

    print(f"setting up {DB_NAME}: {args.tenants} tenants, {args.rows:,} ledger rows", file=sys.stderr)
    database_create()
    run([sys.executable, "manage.py", "migrate", "--noinput"], env)

    import django

    django.setup()
    from django.db import connection
    from django.db.models import Sum

    from billing.invoicing import invoice_issue, invoices_generate, month_bounds
    from billing.models import DailyUsage, Invoice, UsageRecord
    from billing.rendering import invoice_csv, invoice_pdf
    from billing.rollup import rollup_usage
    from providers.catalog import catalog_load
    from providers.models import LLMModel
    from tenants.models import Tenant

    catalog_load(at=CATALOG_AT)
    model_ids = [LLMModel.objects.get(provider__kind=kind, model_id=model_id).pk for kind, model_id in MODELS]
    Tenant.objects.bulk_create([
        Tenant(name=f"Client {i:04d}", slug=f"client-{i:04d}", markup_percent=Decimal(i % 10 * 5),
               byok_fee_percent=Decimal("5") if i % 3 == 0 else Decimal("0"))
        for i in range(args.tenants)
    ])
    start, end = month_bounds(MONTH)
    with connection.cursor() as cursor:
        _, seconds = timed("writing the ledger", cursor.execute, LEDGER_SQL, {
            "model_ids": model_ids, "month": MONTH.isoformat(), "days": DAYS, "rows": args.rows,
        })
        cursor.execute("ANALYZE billing_usagerecord")
    ledger_rows = UsageRecord.objects.count()
    figures: dict[str, float | int | str] = {"ledger_rows": ledger_rows, "tenants": args.tenants, "ledger_write_s": round(seconds, 2)}

    def scan():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*), SUM(cost), SUM(input_tokens), SUM(output_tokens) FROM billing_usagerecord "
                "WHERE local_date >= %s AND local_date <= %s", [start, end],
            )
            return cursor.fetchone()

    scan()  # warm the cache: every timed step below reads a warm table
    _, scan_s = timed("baseline: one scan of the month's ledger", scan)

    def python_rollup(limit: int) -> int:
        groups: dict[tuple, list] = {}
        rows = (UsageRecord.objects.filter(local_date__gte=start, local_date__lte=end)
                .values_list("tenant_id", "local_date", "provider_kind", "model_id", "ownership", "input_tokens", "output_tokens", "cost")
                .order_by()[:limit])
        for tenant_id, day, kind, model_id, ownership, input_tokens, output_tokens, cost in rows.iterator(chunk_size=5000):
            sums = groups.setdefault((tenant_id, day, kind, model_id, ownership), [0, 0, 0, Decimal("0")])
            sums[0] += 1
            sums[1] += input_tokens
            sums[2] += output_tokens
            sums[3] += cost
        return len(groups)

    python_slice = min(args.python_slice, ledger_rows)
    _, python_s = timed(f"baseline: Python roll-up of {python_slice:,} rows", python_rollup, python_slice)
    python_full_s = python_s * ledger_rows / python_slice

    rollup_rows, rollup_s = timed("rollup_usage, the month", rollup_usage, start=start, end=end)
    first = list(DailyUsage.objects.order_by("pk").values_list("tenant_id", "day", "model_id", "ownership", "calls", "provider_cost"))
    _, rollup_again_s = timed("rollup_usage again (idempotent)", rollup_usage, start=start, end=end)
    second = list(DailyUsage.objects.order_by("pk").values_list("tenant_id", "day", "model_id", "ownership", "calls", "provider_cost"))
    identical = sorted(first) == sorted(second)
    ledger_by_day = dict(UsageRecord.objects.values("local_date").annotate(c=Sum("cost")).values_list("local_date", "c"))
    rollup_by_day = dict(DailyUsage.objects.values("day").annotate(c=Sum("provider_cost")).values_list("day", "c"))
    days_equal = ledger_by_day == rollup_by_day

    invoices, invoices_s = timed(f"invoices_generate for {args.tenants} tenants (includes a roll-up)", invoices_generate, month=MONTH)
    rollup_total = DailyUsage.objects.filter(day__gte=start, day__lte=end).aggregate(c=Sum("provider_cost"))["c"]
    invoice_total = Invoice.objects.filter(period_start=start).aggregate(c=Sum("provider_cost"))["c"]
    lines = sum(invoice.lines.count() for invoice in invoices[:50]) / min(50, len(invoices))

    def issue_all():
        for invoice in invoices:
            invoice_issue(invoice=invoice)

    _, issue_s = timed(f"issuing {len(invoices)} invoices", issue_all)
    numbers = sorted(Invoice.objects.filter(period_start=start).values_list("number", flat=True))
    sample = list(Invoice.objects.filter(period_start=start).select_related("tenant").prefetch_related("lines")[: args.pdf_sample])
    _, pdf_s = timed(f"{len(sample)} PDFs", lambda: [invoice_pdf(invoice) for invoice in sample])
    _, csv_s = timed(f"{len(sample)} CSVs", lambda: [invoice_csv(invoice) for invoice in sample])

    figures.update({
        "daily_usage_rows": rollup_rows,
        "scan_s": round(scan_s, 3),
        "python_rollup_s_scaled": round(python_full_s, 2),
        "rollup_s": round(rollup_s, 2),
        "rollup_again_s": round(rollup_again_s, 2),
        "rollup_vs_scan": round(rollup_s / scan_s, 1),
        "python_vs_rollup": round(python_full_s / rollup_s, 1),
        "rollup_idempotent": identical,
        "rollup_equals_ledger_per_day": days_equal,
        "invoices": len(invoices),
        "lines_per_invoice": round(lines, 1),
        "invoices_generate_s": round(invoices_s, 2),
        "invoices_without_rollup_s": round(invoices_s - rollup_again_s, 2),
        "invoice_totals_equal_rollups": rollup_total == invoice_total,
        "issue_s": round(issue_s, 2),
        "numbers_gapless": numbers == [f"AH-{numbers[0][3:7]}-{i:06d}" for i in range(1, len(numbers) + 1)],
        "pdf_ms_each": round(pdf_s / max(1, len(sample)) * 1000, 1),
        "csv_ms_each": round(csv_s / max(1, len(sample)) * 1000, 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "postgres": connection.cursor().connection.info.server_version,
    })
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "billing.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")

    print()
    print(f"ledger: {ledger_rows:,} rows, {args.tenants} tenants, {rollup_rows:,} DailyUsage rows")
    print(f"{'step':<48}{'seconds':>10}{'ratio':>28}")
    print(f"{'baseline: sequential scan of the month':<48}{scan_s:>10.2f}{'1.0 x scan':>28}")
    print(f"{'baseline: Python roll-up (scaled to all rows)':<48}{python_full_s:>10.2f}{python_full_s / scan_s:>21.1f} x scan")
    print(f"{'rollup_usage (set-based)':<48}{rollup_s:>10.2f}{rollup_s / scan_s:>21.1f} x scan"
          f"   ({python_full_s / rollup_s:.0f}x faster than Python)")
    print(f"{'rollup_usage again':<48}{rollup_again_s:>10.2f}")
    print(f"{f'invoices_generate, {len(invoices)} tenants (with roll-up)':<48}{invoices_s:>10.2f}")
    print(f"{'  of which building the invoices':<48}{invoices_s - rollup_again_s:>10.2f}"
          f"{(invoices_s - rollup_again_s) / len(invoices) * 1000:>17.1f} ms each")
    print(f"{f'issuing {len(invoices)} invoices':<48}{issue_s:>10.2f}{issue_s / len(invoices) * 1000:>17.1f} ms each")
    print(f"{'PDF render':<48}{pdf_s:>10.2f}{pdf_s / max(1, len(sample)) * 1000:>17.1f} ms each")
    print(f"{'CSV render':<48}{csv_s:>10.2f}{csv_s / max(1, len(sample)) * 1000:>17.2f} ms each")
    checks = {key: figures[key] for key in ("rollup_idempotent", "rollup_equals_ledger_per_day", "invoice_totals_equal_rollups", "numbers_gapless")}
    print(f"checks: {checks}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Billing's beat tasks: the nightly roll-up and the monthly draft invoices. Thin and idempotent: both rebuild
derived rows from the ledger, so a redelivered or repeated run changes nothing.

Settings import BEAT_SCHEDULE from here before apps are loaded, so the services are imported inside the tasks.
"""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from celery.schedules import crontab
from django.db import InterfaceError, OperationalError
from django.utils import timezone

# Times are UTC. Tenant-local days end up to 12 h after UTC midnight (UTC-12) and start up to 14 h before it:
# - the nightly roll-up redoes the last two UTC days, so every tenant's yesterday is complete by its second run;
# - invoices are drafted at 14:00 UTC on the 1st, once the previous month has ended in every time zone.
BEAT_SCHEDULE = {
    "billing-rollup-yesterday": {
        "task": "billing.rollup_yesterday", "schedule": crontab(hour=0, minute=40), "options": {"expires": 6 * 3600},
    },
    "billing-monthly-invoices": {
        "task": "billing.generate_monthly_invoices", "schedule": crontab(day_of_month=1, hour=14, minute=0),
        "options": {"expires": 12 * 3600},
    },
}

RETRY = {
    "acks_late": True, "autoretry_for": (OperationalError, InterfaceError), "retry_backoff": True,
    "retry_backoff_max": 600, "retry_jitter": True, "max_retries": 5,
}


@shared_task(name="billing.rollup_yesterday", **RETRY)
def rollup_yesterday() -> int:
    """Roll up the day before yesterday and yesterday (UTC dates; the ledger's days are tenant-local)."""
    from billing.rollup import rollup_usage

    today = timezone.now().date()
    return rollup_usage(start=today - timedelta(days=2), end=today - timedelta(days=1))


@shared_task(name="billing.generate_monthly_invoices", **RETRY)
def generate_monthly_invoices() -> int:
    """Draft (or refresh) every tenant's invoice for the previous month. Finance reviews and issues them."""
    from billing.invoicing import invoices_generate

    previous_month = timezone.now().date().replace(day=1) - timedelta(days=1)
    return len(invoices_generate(month=previous_month))

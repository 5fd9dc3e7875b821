"""Billing's beat tasks: the nightly roll-up and the monthly draft invoices. Thin and idempotent: both rebuild
derived rows from the ledger, so a redelivered or repeated run changes nothing.

Their schedule is CELERY_BEAT_SCHEDULE in agencyhub/settings.py.
"""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from billing.invoicing import invoices_generate
from billing.rollup import rollup_usage

RETRY = {
    "acks_late": True, "autoretry_for": (OperationalError, InterfaceError), "retry_backoff": True,
    "retry_backoff_max": 600, "retry_jitter": True, "max_retries": 5,
}


@shared_task(name="billing.rollup_yesterday", **RETRY)
def rollup_yesterday() -> int:
    """Roll up the day before yesterday and yesterday (UTC dates; the ledger's days are tenant-local)."""
    today = timezone.now().date()
    return rollup_usage(start=today - timedelta(days=2), end=today - timedelta(days=1))


@shared_task(name="billing.generate_monthly_invoices", **RETRY)
def generate_monthly_invoices() -> int:
    """Draft (or refresh) every tenant's invoice for the previous month. Finance reviews and issues them."""
    previous_month = timezone.now().date().replace(day=1) - timedelta(days=1)
    return len(invoices_generate(month=previous_month))

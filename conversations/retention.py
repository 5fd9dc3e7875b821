"""Retention: conversation content and raw attempt logs are deleted after each tenant's retention period,
in small batches (each its own short transaction, so no table is locked for long). The usage ledger is
never touched: it keeps plain conversation/message ids, so what was billed stays billed."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from conversations.models import Conversation
from providers.models import AttemptLog
from tenants.models import Tenant

BATCH = 500


def _delete_in_batches(queryset, batch: int = BATCH, max_batches: int = 10_000) -> int:
    deleted = 0
    for _ in range(max_batches):
        ids = list(queryset.values_list("pk", flat=True)[:batch])
        if not ids:
            break
        with transaction.atomic():
            deleted += queryset.model.objects.filter(pk__in=ids).delete()[1].get(queryset.model._meta.label, 0)
    return deleted


def conversation_delete(*, conversation: Conversation) -> None:
    """A client's transcript deleted on request: messages and feedback go, the ledger stays."""
    conversation.delete()


def purge_expired_content(*, now=None, batch: int = BATCH) -> dict:
    now = now or timezone.now()
    report = {"conversations": 0, "attempt_logs": 0}
    for tenant in Tenant.objects.filter(retention_days__isnull=False):
        cutoff = now - timedelta(days=tenant.retention_days)
        report["conversations"] += _delete_in_batches(Conversation.objects.filter(tenant=tenant, updated_at__lt=cutoff), batch)
        report["attempt_logs"] += _delete_in_batches(AttemptLog.objects.filter(tenant_id=tenant.pk, created_at__lt=cutoff), batch)
    # Probes and attempts of tenants without their own period: the platform default.
    default_cutoff = now - timedelta(days=settings.ATTEMPT_LOG_RETENTION_DAYS)
    report["attempt_logs"] += _delete_in_batches(AttemptLog.objects.filter(created_at__lt=default_cutoff), batch)
    return report

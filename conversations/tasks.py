"""Thin tasks: ids in, re-fetch, call one service. Idempotent: a redelivered task finds the work claimed or done."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.db.models import Q
from django.utils import timezone

from conversations.models import Message, MessageStatus
from conversations.retention import purge_expired_content
from conversations.services import INTERRUPTED, ReplyFailed, reply_enqueue, reply_generate
from conversations.callbacks import callback_deliver, callback_schedule, callbacks_due
from routing.models import RoutingRule
from routing.services import calibration_store

log = logging.getLogger(__name__)


@shared_task(
    bind=True, acks_late=True, autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True, retry_backoff_max=60, retry_jitter=True, max_retries=5,
)
def generate_reply(self, reply_id: str) -> str | None:
    if not Message.objects.filter(pk=reply_id).exists():
        return None  # deleted (retention / privacy request): nothing to do
    try:
        reply = reply_generate(reply_id=reply_id)
    except ReplyFailed as failed:
        reply = failed.reply
    if reply.status in (MessageStatus.COMPLETED, MessageStatus.FAILED) and callback_schedule(reply.pk):
        _enqueue_callback(reply.pk)
    return reply.status


STALL_SECONDS = 60  # an async reply still queued after this long has most likely lost its task


@shared_task(acks_late=True)
def requeue_stalled_replies(batch: int = 500) -> int:
    """Queue again the async replies whose task was lost: still `queued` a minute after they were posted (the broker
    refused the task, or it ran out of retries while the database was down), or `running` past their lease (the worker
    died mid-task; its redelivery may come an hour later, or inside the lease and give up). generate_reply claims a
    reply with a conditional update, so a task queued twice still makes one reply and one ledger row."""
    now = timezone.now()
    stalled = (
        Message.objects.filter(role="assistant", mode="async", status__in=[MessageStatus.QUEUED, MessageStatus.RUNNING])  # msg_unfinished_time
        .filter(Q(status=MessageStatus.QUEUED, created_at__lt=now - timedelta(seconds=STALL_SECONDS))
                | Q(status=MessageStatus.RUNNING, started_at__lt=now - timedelta(seconds=settings.REPLY_LEASE_SECONDS)))
        .order_by("created_at").values_list("pk", flat=True)[:batch]
    )
    queued = sum(reply_enqueue(pk) for pk in stalled)
    if queued:
        log.warning("queued %d stalled async repl%s again", queued, "y" if queued == 1 else "ies")
    return queued


@shared_task(acks_late=True)
def fail_interrupted_replies(batch: int = 500) -> int:
    """Mark failed the sync and streamed replies still `running` past their lease: the server process answering
    them was killed (nobody is waiting for them any more). They no longer show as in progress; a retry of the
    request with the same Idempotency-Key generates them (services._claim), and the client API says so."""
    stale = timezone.now() - timedelta(seconds=settings.REPLY_LEASE_SECONDS)
    ids = list(
        Message.objects.filter(role="assistant", mode__in=["sync", "stream"], status=MessageStatus.RUNNING,  # msg_unfinished_time
                               started_at__lt=stale)
        .order_by("created_at").values_list("pk", flat=True)[:batch]
    )
    failed = Message.objects.filter(pk__in=ids, status=MessageStatus.RUNNING, started_at__lt=stale).update(
        status=MessageStatus.FAILED, error_code=INTERRUPTED, completed_at=timezone.now(),
        error_detail="The reply was interrupted: the server stopped before it was finished. Send the message again "
                     "(with the same Idempotency-Key, the stored message is answered and not posted twice).",
    )
    if failed:
        log.warning("marked %d interrupted repl%s failed", failed, "y" if failed == 1 else "ies")
    return failed


@shared_task(acks_late=True, autoretry_for=(OperationalError, InterfaceError), retry_backoff=True, retry_backoff_max=60,
             retry_jitter=True, max_retries=5)
def deliver_callback(reply_id: str) -> str | None:
    """One attempt at a due callback; its retries are scheduled on the reply and sent by send_due_callbacks."""
    return callback_deliver(reply_id)


@shared_task(acks_late=True)
def send_due_callbacks(batch: int = 500) -> int:
    """Queue every callback that is due: retries, and those whose task was lost (broker down, worker killed)."""
    return sum(_enqueue_callback(pk) for pk in callbacks_due(batch))


def _enqueue_callback(reply_id) -> bool:
    try:
        deliver_callback.delay(str(reply_id))
    except Exception as exc:  # noqa: BLE001 - the broker is unreachable: the callback stays due, send_due_callbacks retries
        log.warning("callback for %s stays due, the broker refused its task (%s)", reply_id, exc, extra={"throttle": True})
        return False
    return True


@shared_task(acks_late=True)
def calibrate_complexity(sample_size: int = 2000, min_samples: int = 100) -> int:
    """Re-derive the thresholds of share-based rules ("send about N % to premium") from recent scores."""
    shares = set(RoutingRule.objects.filter(premium_share_percent__isnull=False).values_list("premium_share_percent", flat=True))
    if not shares:
        return 0
    recent = Message.objects.filter(role="assistant", complexity_score__isnull=False).order_by("-created_at")
    stored = 0
    pooled = list(recent.values_list("complexity_score", flat=True)[:sample_size])
    tenant_ids = set(recent.values_list("tenant_id", flat=True)[:sample_size])
    for share in shares:
        if len(pooled) >= min_samples:
            calibration_store(tenant_id=None, share_percent=share, scores=pooled)
            stored += 1
        for tenant_id in tenant_ids:
            scores = list(recent.filter(tenant_id=tenant_id).values_list("complexity_score", flat=True)[:sample_size])
            if len(scores) >= min_samples:
                calibration_store(tenant_id=tenant_id, share_percent=share, scores=scores)
                stored += 1
    return stored


@shared_task(acks_late=True)
def purge_expired() -> dict:
    return purge_expired_content()

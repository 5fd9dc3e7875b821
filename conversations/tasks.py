"""Thin tasks: ids in, re-fetch, call one service. Idempotent: a redelivered task finds the work claimed or done."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from conversations.callbacks import callback_deliver, callback_schedule, callbacks_due
from conversations.models import Message, MessageStatus
from conversations.retention import purge_expired_content
from conversations.services import ReplyFailed, reply_generate
from conversations.sweeper import interrupted_replies_fail, stalled_async_replies
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
        delay_or_leave(deliver_callback, reply.pk, "the callback")
    return reply.status


@shared_task(acks_late=True)
def requeue_stalled_replies(batch: int = 500) -> int:
    """Queue again the async replies whose task was lost (conversations.sweeper)."""
    queued = sum(delay_or_leave(generate_reply, pk, "the reply") for pk in stalled_async_replies(batch))
    if queued:
        log.warning("queued %d stalled async repl%s again", queued, "y" if queued == 1 else "ies")
    return queued


@shared_task(acks_late=True)
def fail_interrupted_replies(batch: int = 500) -> int:
    """Mark failed the sync and streamed replies whose server process was killed (conversations.sweeper)."""
    failed = interrupted_replies_fail(batch)
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
    return sum(delay_or_leave(deliver_callback, pk, "the callback") for pk in callbacks_due(batch))


def delay_or_leave(task, reply_id, what: str) -> bool:
    """Queue `task` for a reply. If the broker cannot take it (Redis down), nothing is lost: `what` it was for stays
    stored, due, and a beat task queues it again once the broker is back. Logged, never raised: the client's message
    is stored either way."""
    try:
        task.delay(str(reply_id))
    except Exception as exc:  # noqa: BLE001 - kombu's OperationalError and friends: the broker is unreachable
        log.warning("%s of %s stays due, the broker refused its task (%s): a beat task queues it again", what, reply_id, exc,
                    extra={"throttle": True})
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

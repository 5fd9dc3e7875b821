"""Callback delivery for async replies: at least once, with backoff, surviving worker crashes and broker outages.

The schedule lives on the reply, not in the task queue, so nothing is lost with a task:

- `callback_next_at`: when the next attempt is due (NULL: none pending: delivered, given up, or never scheduled);
- `callback_attempts`, `callback_sent_at` (when the last attempt started), `callback_delivered_at` (a 2xx answer).

`callback_schedule` makes a finished reply due now; the task `deliver_callback` claims a due reply by pushing its
`callback_next_at` a lease ahead (one sender at a time: a killed sender's claim lapses and the reply is due again),
POSTs it, then records delivery or the next attempt with exponential backoff. The beat task `send_due_callbacks`
queues every due reply each minute: the retries, and any reply whose task was lost (the broker was down when the
reply finished, a worker died mid-POST)."""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from conversations.models import Message
from conversations.presenters import message_payload
from conversations.webhooks import CallbackError, post_signed

log = logging.getLogger(__name__)

LEASE_SECONDS = 60  # a sender's claim: longer than the POST's 10 s timeout
FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 3600


def _max_attempts() -> int:
    return int(getattr(settings, "CALLBACK_MAX_ATTEMPTS", 20))  # about 14 hours of retries with the backoff below


def retry_delay(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: 30 s, 1, 2, 4 min … up to an hour, ±20 %."""
    base = min(FIRST_RETRY_SECONDS * 2 ** max(0, attempts - 1), MAX_RETRY_SECONDS)
    return base * random.uniform(0.8, 1.2)


def callback_schedule(reply_id) -> bool:
    """Make a finished reply's callback due now, once (a redelivered generate task does not schedule it again)."""
    return bool(
        Message.objects.filter(pk=reply_id, callback_attempts=0, callback_next_at__isnull=True, callback_delivered_at__isnull=True)
        .exclude(conversation__callback_url="")
        .update(callback_next_at=timezone.now())
    )


def callback_claim(reply_id) -> bool:
    """Take a due callback for this sender: its next attempt moves a lease ahead, so no other sender takes it."""
    now = timezone.now()
    return bool(
        Message.objects.filter(pk=reply_id, callback_delivered_at__isnull=True, callback_next_at__lte=now)
        .update(callback_next_at=now + timedelta(seconds=LEASE_SECONDS), callback_sent_at=now,
                callback_attempts=F("callback_attempts") + 1)
    )


def callback_deliver(reply_id) -> str | None:
    """One attempt at a due callback: "delivered", "retrying", "rejected" (a final answer, e.g. 4xx), "gave up", or
    None if it was not due (delivered already, or another sender holds it)."""
    if not callback_claim(reply_id):
        return None
    reply = Message.objects.select_related("conversation", "tenant", "model__provider").get(pk=reply_id)
    payload = {"event": f"message.{reply.status}", "conversation_id": str(reply.conversation_id), "message": message_payload(reply)}
    try:
        post_signed(reply.conversation.callback_url, payload, reply.tenant.webhook_secret)
    except CallbackError as exc:
        retry = exc.retryable and reply.callback_attempts < _max_attempts()
        next_at = timezone.now() + timedelta(seconds=retry_delay(reply.callback_attempts)) if retry else None
        Message.objects.filter(pk=reply_id).update(callback_next_at=next_at)
        outcome = "retrying" if retry else ("gave up" if exc.retryable else "rejected")
        log.warning("callback for %s failed (attempt %d, %s): %s", reply_id, reply.callback_attempts, outcome, exc)
        return outcome
    Message.objects.filter(pk=reply_id).update(callback_delivered_at=timezone.now(), callback_next_at=None)
    return "delivered"


def callbacks_due(batch: int = 500) -> list:
    """Ids of replies whose callback is due now (msg_callback_due)."""
    return list(
        Message.objects.filter(callback_next_at__lte=timezone.now(), callback_delivered_at__isnull=True)
        .order_by("callback_next_at").values_list("pk", flat=True)[:batch]
    )

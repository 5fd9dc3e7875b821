"""Replies a lost task or a killed process left unfinished, found by the beat tasks of conversations.tasks.

- An async reply still `queued` a minute after it was posted (the broker refused its task, or the task ran out of
  retries while the database was down), or `running` past its lease (its worker died mid-task): queued again.
  generate_reply claims a reply with a conditional update, so a task queued twice still makes one reply and one
  ledger row.
- A sync or streamed reply still `running` past its lease: the server process answering it was killed and nobody
  is waiting for it. It is marked failed `interrupted`; a retry of the request with the same Idempotency-Key
  generates it (services._claim).
Both read the partial index msg_unfinished_time (unfinished replies are few at any time).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from conversations.models import Message, MessageRole, MessageStatus
from conversations.services import INTERRUPTED

STALL_SECONDS = 60  # an async reply still queued after this long has most likely lost its task
INTERRUPTED_DETAIL = ("The reply was interrupted: the server stopped before it was finished. Send the message again "
                      "(with the same Idempotency-Key, the stored message is answered and not posted twice).")


def _lease_start():
    return timezone.now() - timedelta(seconds=settings.REPLY_LEASE_SECONDS)


def stalled_async_replies(batch: int = 500) -> list:
    """Ids of the async replies whose task was lost, oldest first."""
    return list(
        Message.objects.filter(role=MessageRole.ASSISTANT, mode="async", status__in=[MessageStatus.QUEUED, MessageStatus.RUNNING])
        .filter(Q(status=MessageStatus.QUEUED, created_at__lt=timezone.now() - timedelta(seconds=STALL_SECONDS))
                | Q(status=MessageStatus.RUNNING, started_at__lt=_lease_start()))
        .order_by("created_at").values_list("pk", flat=True)[:batch]
    )


def interrupted_replies_fail(batch: int = 500) -> int:
    """Mark failed `interrupted` the sync and streamed replies still running past their lease (one statement).
    Returns how many."""
    stranded = (
        Message.objects.filter(role=MessageRole.ASSISTANT, mode__in=["sync", "stream"], status=MessageStatus.RUNNING,
                               started_at__lt=_lease_start())
        .order_by("created_at").values("pk")[:batch]
    )
    return Message.objects.filter(pk__in=stranded).update(
        status=MessageStatus.FAILED, error_code=INTERRUPTED, error_detail=INTERRUPTED_DETAIL, completed_at=timezone.now(),
    )

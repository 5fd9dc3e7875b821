"""The chat engine: one service used by every entry point (sync, stream, async, OpenAI-compatible).

persist the user message -> plan -> call with failover (no transaction open) -> persist the reply, its
usage and the ledger row in one transaction (on the hot path each persist is one SQL statement:
conversations.writes). Nothing the client sent is ever lost; a reply that cannot be produced is stored as
`failed` with the reasons.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from billing.alerts import budget_alerts_check
from billing.budget import BudgetExceeded, Reservation, budget_day, budget_release, budget_reserve, budget_settle
from billing.services import SpendCapReached, spend_cap_check, usage_record_build, usage_record_count
from conversations.context import PER_MESSAGE_OVERHEAD, estimate_tokens, history_for, merge_roles, trim_to_window
from conversations.models import Assistant, Conversation, Message, MessageRole, MessageStatus
from conversations.writes import messages_insert, reply_complete_write
from providers.errors import NoPriceError
from providers.health import attempt_logs_write
from providers.models import ModelTier
from routing.models import OverBudget
from providers.types import ChatMessage, ChatRequest
from routing.executor import AllCandidatesFailed, Execution, StreamInterrupted, StreamOutcome, execute, execute_stream
from routing.planner import Candidate, NoRouteError, Plan, RoutingContext, UnknownModelError, plan_route
from tenants.models import Tenant

log = logging.getLogger(__name__)


@dataclass
class Overrides:
    """Per-request settings from the OpenAI-compatible endpoint: the client sends its own context."""

    model: str | None = None
    system: str | None = None
    messages: list[ChatMessage] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Posted:
    user_message: Message
    reply: Message
    replayed: bool = False
    claimed: bool = False  # the reply was created already running, owned by this request (see message_post)

    @property
    def claimed_reply(self) -> Message | None:
        """The reply to pass to reply_generate / reply_stream as `claimed`: this request owns it."""
        return self.reply if self.claimed else None


class ReplyFailed(Exception):
    """Every candidate failed (or none could be planned). The reply is stored as failed."""

    def __init__(self, reply: Message, status: int, code: str, message: str, retry_after: int | None = None):
        self.reply = reply
        self.status = status
        self.code = code
        self.retry_after = retry_after
        super().__init__(message)


def conversation_start(
    *, tenant: Tenant, assistant: Assistant, external_user_id: str = "", metadata: dict | None = None, callback_url: str = ""
) -> Conversation:
    return Conversation.objects.create(
        tenant=tenant, assistant=assistant, external_user_id=external_user_id, metadata=metadata or {}, callback_url=callback_url
    )


def message_post(
    *,
    tenant: Tenant,
    conversation: Conversation,
    content: str,
    mode: str = "sync",
    escalate: bool = False,
    metadata: dict | None = None,
    idempotency_key: str = "",
    claim: bool = False,
) -> Posted:
    """Store the user message and its (queued) reply. With an Idempotency-Key seen before, return the first pair.

    `claim=True` (a sync or stream request that generates the reply itself, right away) creates the reply
    already running, leased to this request, in the same statement: no separate claim to commit. Pass the
    returned Posted.claimed_reply to reply_generate / reply_stream. An unsaved `conversation` (a new one) is stored
    in that statement too (conversations.writes)."""
    claim = claim and mode != "async"
    if idempotency_key:
        replay = _replay(tenant, idempotency_key)
        if replay:
            return replay
    user_message = Message(
        tenant=tenant, conversation=conversation, role=MessageRole.USER, content=content,
        escalate=escalate, metadata=metadata or {}, idempotency_key=idempotency_key,
    )
    reply = Message(
        tenant=tenant, conversation=conversation, role=MessageRole.ASSISTANT, reply_to=user_message, mode=mode,
        status=MessageStatus.RUNNING if claim else MessageStatus.QUEUED, started_at=timezone.now() if claim else None,
    )
    try:
        messages_insert(conversation, user_message, reply, savepoint=bool(idempotency_key))
    except IntegrityError:
        # The same Idempotency-Key raced us: the other request's pair is the answer.
        replay = _replay(tenant, idempotency_key) if idempotency_key else None
        if replay is None:
            raise
        return replay
    if mode == "async":
        from conversations.tasks import generate_reply

        transaction.on_commit(lambda: generate_reply.delay(str(reply.pk)))
    return Posted(user_message=user_message, reply=reply, claimed=claim)


def _replay(tenant: Tenant, idempotency_key: str) -> Posted | None:
    first = Message.objects.filter(tenant=tenant, idempotency_key=idempotency_key).select_related("reply").first()
    if first is None:
        return None
    return Posted(user_message=first, reply=first.reply, replayed=True)


def _claim(reply_id) -> bool:
    """Take the reply for generation. A redelivered task or a retried request finds it taken and does nothing,
    unless the previous claimant died (its lease expired)."""
    stale = timezone.now() - timedelta(seconds=settings.REPLY_LEASE_SECONDS)
    return bool(
        Message.objects.filter(pk=reply_id)
        .filter(Q(status=MessageStatus.QUEUED) | Q(status=MessageStatus.RUNNING, started_at__lt=stale))
        .update(status=MessageStatus.RUNNING, started_at=timezone.now())
    )


def _load(reply_id) -> Message:
    return Message.objects.select_related("conversation__assistant", "tenant", "reply_to").get(pk=reply_id)


@dataclass
class Prompt:
    """What will be sent, before per-model trimming: computed once, used to plan and to build requests."""

    system: str
    history: list[ChatMessage]
    max_tokens: int
    temperature: float | None
    stop: list[str]
    tools: list[dict]

    @property
    def estimated_tokens(self) -> int:
        return estimate_tokens(self.system) + sum(estimate_tokens(m.content) + PER_MESSAGE_OVERHEAD for m in self.history)

    @property
    def required_tokens(self) -> int:
        """The part no trimming removes: the system prompt and the latest turn."""
        last = self.history[-1].content if self.history else ""
        return estimate_tokens(self.system) + estimate_tokens(last) + 2 * PER_MESSAGE_OVERHEAD


def _prompt(reply: Message, overrides: Overrides | None) -> Prompt:
    assistant = reply.conversation.assistant
    if overrides and overrides.messages is not None:
        system = overrides.system if overrides.system is not None else assistant.instructions
        history = merge_roles(overrides.messages)
    else:
        system = assistant.instructions
        history = history_for(reply)
    return Prompt(
        system=system,
        history=history,
        max_tokens=(overrides.max_tokens if overrides else None) or assistant.default_max_tokens,
        temperature=overrides.temperature if overrides and overrides.temperature is not None else assistant.temperature,
        stop=overrides.stop if overrides else [],
        tools=overrides.tools if overrides else [],
    )


def _routing_context(reply: Message, prompt: Prompt, overrides: Overrides | None) -> RoutingContext:
    conversation = reply.conversation
    user_message = reply.reply_to
    return RoutingContext(
        tenant=reply.tenant,
        text=user_message.content,
        escalate=user_message.escalate,
        metadata={**conversation.metadata, **user_message.metadata},
        turns=sum(1 for m in prompt.history if m.role == "user"),
        conversation_tokens=conversation.input_tokens + conversation.output_tokens,
        prompt_tokens=prompt.estimated_tokens,
        required_tokens=prompt.required_tokens,
        max_output_tokens=prompt.max_tokens,
        needs_tools=bool(prompt.tools),
        requested_model=overrides.model if overrides else None,
        policy=conversation.assistant.routing_policy,
    )


def _request_builder(reply: Message, prompt: Prompt):
    user_id = reply.conversation.external_user_id

    def build(candidate: Candidate) -> ChatRequest:
        model = candidate.model
        max_tokens = max(1, min(prompt.max_tokens, model.max_output_tokens))
        return ChatRequest(
            model=model.model_id,
            system=prompt.system,
            messages=trim_to_window(prompt.history, system=prompt.system, context_window=model.context_window, max_output_tokens=max_tokens),
            max_tokens=max_tokens,
            temperature=prompt.temperature,
            supports_temperature=model.supports_temperature,
            stop=prompt.stop,
            tools=prompt.tools,
            metadata={"user_id": user_id} if user_id else {},
        )

    return build


def _release_db_connection() -> None:
    """Give the database connection back while the provider thinks (seconds): with many requests in flight,
    holding one each would exhaust PostgreSQL. Django reconnects (or takes one from the pool) on next use."""
    if not connection.in_atomic_block:
        connection.close()


def _decision(plan: Plan, attempts: list) -> dict:
    return {"reason": plan.reason, **plan.details, "attempts": [a.as_dict() for a in attempts]}


def _fail(reply: Message, *, code: str, detail: str, decision: dict | None = None, partial_text: str = "") -> Message:
    with transaction.atomic():
        locked = Message.objects.select_for_update().get(pk=reply.pk)
        if locked.status == MessageStatus.COMPLETED:
            return locked
        locked.status = MessageStatus.FAILED
        locked.error_code = code
        locked.error_detail = detail[:5000]
        locked.content = partial_text
        locked.route_decision = decision or {}
        locked.route_reason = (decision or {}).get("reason", "")
        locked.completed_at = timezone.now()
        locked.save(update_fields=["status", "error_code", "error_detail", "content", "route_decision", "route_reason", "completed_at"])
    return locked


def _complete(reply: Message, plan: Plan, execution: Execution) -> Message:
    result = execution.result
    candidate = execution.candidate
    usage = result.usage
    record = usage_record_build(
        tenant=reply.tenant, model=candidate.model, credential=candidate.credential, result=result,
        conversation_id=reply.conversation_id, message_id=reply.pk, prices=plan.prices.get(candidate.model.pk),
    )
    reply.status = MessageStatus.COMPLETED
    reply.content = result.text
    reply.model = candidate.model
    reply.provider_kind = candidate.model.provider.kind
    reply.model_name = result.model or candidate.model.model_id
    reply.finish_reason = result.finish_reason.value
    reply.input_tokens = usage.input_tokens
    reply.output_tokens = usage.output_tokens
    reply.cached_input_tokens = usage.cached_input_tokens
    reply.cache_write_tokens = usage.cache_write_tokens
    reply.reasoning_tokens = usage.reasoning_tokens
    reply.cost = record.cost
    reply.latency_ms = result.latency_ms
    reply.ttft_ms = result.ttft_ms
    reply.route_reason = plan.reason
    reply.complexity_score = plan.details.get("complexity")
    reply.route_decision = {**_decision(plan, execution.attempts), "tool_calls": result.tool_calls}
    reply.error_code = ""
    reply.error_detail = ""
    reply.completed_at = timezone.now()
    if not reply_complete_write(reply, COMPLETED_FIELDS, record=record, attempt_logs=execution.unsaved_logs):
        return _load(reply.pk)  # finished by another claimant; never bill twice
    usage_record_count(record)
    return reply


COMPLETED_FIELDS = [
    "status", "content", "model", "provider_kind", "model_name", "finish_reason", "input_tokens", "output_tokens",
    "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "cost", "latency_ms", "ttft_ms", "route_reason",
    "complexity_score", "route_decision", "error_code", "error_detail", "completed_at",
]


def _settle(reply: Message, plan: Plan, execution: Execution, reservation: Reservation) -> Message:
    try:
        stored = _complete(reply, plan, execution)
    except NoPriceError as exc:
        attempt_logs_write(execution.unsaved_logs)  # never written (the completing write did not run): the calls happened
        budget_release(reservation=reservation)
        # Enabled models must have a price (the admin refuses otherwise); if one slipped through, say so loudly.
        log.error("reply %s answered by a model with no price: %s", reply.pk, exc)
        _fail(reply, code="no_price", detail=str(exc), decision=_decision(plan, execution.attempts))
        raise ReplyFailed(_load(reply.pk), 502, "no_price", str(exc)) from exc
    used = budget_settle(reservation=reservation, tenant=reply.tenant, tokens_used=execution.result.usage.total_tokens)
    if used is not None:
        budget_alerts_check(tenant=reply.tenant, day=reservation.day, used_tokens=used)
    return stored


def _admit(reply: Message, ctx: RoutingContext, plan: Plan, prompt: Prompt) -> tuple[Plan, Reservation]:
    """Budget and spend cap before the call. Over budget: 429, or the economy tier if the policy degrades."""
    tenant = reply.tenant
    try:
        spend_cap_check(tenant)
        return plan, budget_reserve(tenant=tenant, tokens=prompt.estimated_tokens + prompt.max_tokens)
    except BudgetExceeded as exc:
        if plan.details.get("over_budget") == OverBudget.DEGRADE:
            ctx.force_tier = ModelTier.ECONOMY
            degraded = _plan_or_fail(reply, ctx)
            degraded.reason = f"over budget, degraded: {degraded.reason}"
            return degraded, Reservation(tenant_id=tenant.pk, day=budget_day(tenant), bucket_key="", tokens=0, id="")
        failed = _fail(reply, code="budget_exceeded", detail=str(exc), decision={"reason": "budget exceeded", **plan.details})
        raise ReplyFailed(failed, 429, "budget_exceeded", str(exc), retry_after=exc.retry_after) from exc
    except SpendCapReached as exc:
        failed = _fail(reply, code="spend_cap_reached", detail=str(exc), decision={"reason": "spend cap reached", **plan.details})
        raise ReplyFailed(failed, 429, "spend_cap_reached", str(exc), retry_after=exc.retry_after) from exc


def _plan_or_fail(reply: Message, ctx: RoutingContext) -> Plan:
    try:
        return plan_route(ctx)
    except UnknownModelError as exc:
        failed = _fail(reply, code="model_not_found", detail=str(exc))
        raise ReplyFailed(failed, 400, "model_not_found", str(exc)) from exc
    except NoRouteError as exc:
        failed = _fail(reply, code="no_route", detail=str(exc))
        raise ReplyFailed(failed, 503, "no_route", str(exc)) from exc


def _all_failed(reply: Message, plan: Plan, failure: AllCandidatesFailed, reservation: Reservation) -> ReplyFailed:
    budget_release(reservation=reservation)
    failed = _fail(reply, code="providers_failed", detail=str(failure), decision=_decision(plan, failure.attempts))
    return ReplyFailed(failed, failure.http_status, "providers_failed", "Every provider failed to answer; the message is stored and can be retried.",
                       retry_after=failure.retry_after)


def _claimed_reply(reply_id, claimed: Message | None) -> Message | None:
    """The reply to generate, loaded, if this caller owns it: `claimed` (created running by message_post in this
    request) or claimed now. None if it is done or in progress elsewhere."""
    if claimed is not None:
        return claimed
    return _load(reply_id) if _claim(reply_id) else None


def reply_generate(*, reply_id, overrides: Overrides | None = None, claimed: Message | None = None) -> Message:
    """Produce a reply (sync and async modes). Returns the stored reply; raises ReplyFailed if it failed.

    `claimed`: the reply as returned by message_post(claim=True), already owned by this request."""
    reply = _claimed_reply(reply_id, claimed)
    if reply is None:
        return _load(reply_id)  # done, or in progress elsewhere
    prompt = _prompt(reply, overrides)
    ctx = _routing_context(reply, prompt, overrides)
    plan, reservation = _admit(reply, ctx, _plan_or_fail(reply, ctx), prompt)
    build = _request_builder(reply, prompt)
    _release_db_connection()
    try:
        execution = execute(plan, build, tenant_id=reply.tenant_id, defer_success_log=True)
    except AllCandidatesFailed as failure:
        raise _all_failed(reply, plan, failure, reservation) from failure
    except BaseException:
        budget_release(reservation=reservation)
        raise
    return _settle(reply, plan, execution, reservation)


@dataclass
class StreamChunk:
    kind: str  # "start" (a candidate began answering) | "delta" | "done" | "error"
    text: str = ""
    reply: Message | None = None
    candidate: Candidate | None = None
    plan: Plan | None = None
    error: ReplyFailed | None = None


def reply_stream(*, reply_id, overrides: Overrides | None = None, claimed: Message | None = None) -> Iterator[StreamChunk]:
    """Stream a reply. Yields `start` before the first delta, then deltas, then `done` or `error`.

    If the consumer goes away (client disconnect closes this generator), the provider stream is still read
    to the end and the reply stored complete.
    """
    reply = _claimed_reply(reply_id, claimed)
    if reply is None:
        existing = _load(reply_id)
        yield StreamChunk(kind="done", reply=existing, text=existing.content)
        return
    prompt = _prompt(reply, overrides)
    ctx = _routing_context(reply, prompt, overrides)
    try:
        plan, reservation = _admit(reply, ctx, _plan_or_fail(reply, ctx), prompt)
    except ReplyFailed as failed:
        yield StreamChunk(kind="error", error=failed, reply=failed.reply)
        return
    build = _request_builder(reply, prompt)
    outcome = StreamOutcome()
    deltas = execute_stream(plan, build, outcome, tenant_id=reply.tenant_id, defer_success_log=True)
    _release_db_connection()
    started = False
    try:
        for text in deltas:
            if not started:
                started = True
                yield StreamChunk(kind="start", candidate=outcome.current, plan=plan, reply=reply)
            yield StreamChunk(kind="delta", text=text)
    except GeneratorExit:
        _finish_after_disconnect(reply, plan, deltas, outcome, reservation)
        raise
    except AllCandidatesFailed as failure:
        failed = _all_failed(reply, plan, failure, reservation)
        yield StreamChunk(kind="error", error=failed, reply=failed.reply)
        return
    except StreamInterrupted as interrupted:
        budget_release(reservation=reservation)
        failed = _fail(
            reply, code="stream_interrupted", detail=str(interrupted), decision=_decision(plan, interrupted.attempts),
            partial_text=interrupted.text,
        )
        yield StreamChunk(kind="error", reply=failed, error=ReplyFailed(failed, 502, "stream_interrupted", "The provider failed mid-reply."))
        return
    try:
        stored = _settle(reply, plan, outcome.execution, reservation)
    except ReplyFailed as failed:
        yield StreamChunk(kind="error", error=failed, reply=failed.reply)
        return
    yield StreamChunk(kind="done", reply=stored, plan=plan, candidate=outcome.execution.candidate)


def _finish_after_disconnect(reply: Message, plan: Plan, deltas: Iterator[str], outcome: StreamOutcome, reservation: Reservation) -> None:
    try:
        for _ in deltas:
            pass
        _settle(reply, plan, outcome.execution, reservation)
    except AllCandidatesFailed as failure:
        _all_failed(reply, plan, failure, reservation)
    except StreamInterrupted as interrupted:
        budget_release(reservation=reservation)
        _fail(reply, code="stream_interrupted", detail=str(interrupted), decision=_decision(plan, interrupted.attempts), partial_text=interrupted.text)
    except ReplyFailed:
        pass


def feedback_set(*, message: Message, rating: int, comment: str = ""):
    from conversations.models import Feedback

    feedback, _ = Feedback.objects.update_or_create(message=message, defaults={"rating": rating, "comment": comment})
    return feedback

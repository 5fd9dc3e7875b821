"""The chat engine's two one-statement writes (conversations.writes): what they store, that a reply is billed once
however many claimants complete it, and that skipping Model.save() skips nothing that listens."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, connection
from django.db.models.signals import post_save, pre_save
from django.test.utils import CaptureQueriesContext

from billing.models import UsageRecord
from billing.services import usage_record_build
from conversations.access import assistant_default
from conversations.models import Conversation, Message, MessageRole, MessageStatus
from conversations.services import COMPLETED_FIELDS
from conversations.writes import messages_insert, reply_complete_write
from providers.models import AttemptLog, Credential
from providers.types import ChatResult, FinishReason, Usage
from tests.chat_fixtures import model


def pair(tenant, conversation, content="hi", **user_fields) -> tuple[Message, Message]:
    user = Message(tenant=tenant, conversation=conversation, role=MessageRole.USER, content=content, **user_fields)
    reply = Message(tenant=tenant, conversation=conversation, role=MessageRole.ASSISTANT, reply_to=user, mode="sync",
                    status=MessageStatus.RUNNING)
    return user, reply


def test_nothing_listens_to_the_saves_these_writes_skip():
    for sender in (Message, Conversation, UsageRecord, AttemptLog):
        assert not post_save.has_listeners(sender) and not pre_save.has_listeners(sender), sender


def test_a_new_conversation_and_its_pair_are_one_statement(tenant, db):
    conversation = Conversation(tenant=tenant, assistant=assistant_default(tenant=tenant), metadata={"source": "openai"})
    user, reply = pair(tenant, conversation, "Hello", metadata={"channel": "sales"}, escalate=True)
    with CaptureQueriesContext(connection) as queries:
        messages_insert(conversation, user, reply)
    assert len(queries.captured_queries) == 1
    stored = Conversation.objects.get(pk=conversation.pk)
    assert stored.metadata == {"source": "openai"} and stored.created_at is not None and stored.cost == 0
    user_row, reply_row = Message.objects.get(pk=user.pk), Message.objects.get(pk=reply.pk)
    assert (user_row.content, user_row.metadata, user_row.escalate, user_row.status) == ("Hello", {"channel": "sales"}, True, "completed")
    assert (reply_row.reply_to_id, reply_row.status, reply_row.mode) == (user.pk, "running", "sync")
    assert (user_row.created_at, reply_row.created_at) == (user.created_at, reply.created_at)  # to the microsecond
    assert not user._state.adding and not conversation._state.adding


def test_a_pair_in_an_existing_conversation_moves_its_updated_at(tenant, db):
    conversation = Conversation.objects.create(tenant=tenant, assistant=assistant_default(tenant=tenant))
    before = Conversation.objects.get(pk=conversation.pk).updated_at
    messages_insert(conversation, *pair(tenant, conversation))
    assert Conversation.objects.get(pk=conversation.pk).updated_at > before
    assert conversation.messages.count() == 2


def test_a_duplicate_idempotency_key_writes_nothing_not_even_the_new_conversation(tenant, db):
    first = Conversation.objects.create(tenant=tenant, assistant=assistant_default(tenant=tenant))
    messages_insert(first, *pair(tenant, first, idempotency_key="k1"))
    second = Conversation(tenant=tenant, assistant=first.assistant)
    with pytest.raises(IntegrityError):
        messages_insert(second, *pair(tenant, second, idempotency_key="k1"), savepoint=True)
    assert not Conversation.objects.filter(pk=second.pk).exists()
    assert Message.objects.filter(tenant=tenant).count() == 2  # and the test's transaction is still usable


def complete(reply, conversation, credential, *, latency_ms=7, statements=1):
    llm = credential.provider.models.get(model_id="gpt-4o-mini")
    result = ChatResult(text="Done.", model="gpt-4o-mini-2024", finish_reason=FinishReason.STOP,
                        usage=Usage(input_tokens=1_000, output_tokens=500), latency_ms=latency_ms, request_id="req-1")
    record = usage_record_build(tenant=reply.tenant, model=llm, credential=credential, result=result,
                                conversation_id=conversation.pk, message_id=reply.pk)
    reply.status, reply.content, reply.model, reply.cost = MessageStatus.COMPLETED, result.text, llm, record.cost
    reply.route_decision = {"reason": "default", "attempts": [{"outcome": "ok"}]}
    log = AttemptLog(provider_kind="openai", model=llm, credential=credential, tenant_id=reply.tenant_id, outcome="ok",
                     latency_ms=latency_ms)
    with CaptureQueriesContext(connection) as queries:
        done = reply_complete_write(reply, COMPLETED_FIELDS, record=record, attempt_logs=[log])
    if statements is not None:
        assert len(queries.captured_queries) == statements
    return done, record


@pytest.fixture
def openai_credential(providers_on_simulator) -> Credential:
    return Credential.objects.get(provider__kind="openai", tenant__isnull=True)


def test_completing_writes_the_reply_the_ledger_row_the_totals_and_the_attempts(tenant, openai_credential):
    conversation = Conversation.objects.create(tenant=tenant, assistant=assistant_default(tenant=tenant))
    user, reply = pair(tenant, conversation)
    messages_insert(conversation, user, reply)
    done, record = complete(reply, conversation, openai_credential)
    assert done
    stored = Message.objects.get(pk=reply.pk)
    assert (stored.status, stored.content, stored.model, stored.cost) == ("completed", "Done.", model("openai", "gpt-4o-mini"), record.cost)
    assert stored.route_decision == {"reason": "default", "attempts": [{"outcome": "ok"}]}
    row = UsageRecord.objects.get(message_id=reply.pk)
    assert row.pk == record.pk and row.cost == record.cost > Decimal("0")
    assert (row.input_tokens, row.output_tokens, row.model_name, row.request_id, row.ownership) == (1_000, 500, "gpt-4o-mini-2024", "req-1", "agency")
    assert row.local_date == record.local_date and row.price_id == record.price.pk
    totals = Conversation.objects.get(pk=conversation.pk)
    assert (totals.input_tokens, totals.output_tokens, totals.cost) == (1_000, 500, record.cost)
    assert AttemptLog.objects.filter(tenant_id=tenant.pk, outcome="ok").count() == 1


def test_a_reply_completed_twice_is_billed_once_but_both_calls_are_logged(tenant, openai_credential):
    conversation = Conversation.objects.create(tenant=tenant, assistant=assistant_default(tenant=tenant))
    user, reply = pair(tenant, conversation)
    messages_insert(conversation, user, reply)
    first, _ = complete(reply, conversation, openai_credential, latency_ms=5)
    second, record = complete(Message.objects.get(pk=reply.pk), conversation, openai_credential, latency_ms=9)
    assert (first, second) == (True, False)
    assert record.pk is None and UsageRecord.objects.filter(message_id=reply.pk).count() == 1
    assert Conversation.objects.get(pk=conversation.pk).output_tokens == 500
    assert sorted(AttemptLog.objects.filter(tenant_id=tenant.pk).values_list("latency_ms", flat=True)) == [5, 9]


def test_other_databases_get_the_same_rows_through_the_orm(tenant, openai_credential, monkeypatch):
    """`make run` uses SQLite: the writes fall back to the ORM there, with the same rows and the same bill-once rule."""
    monkeypatch.setattr("conversations.writes._postgresql", lambda: False)
    conversation = Conversation(tenant=tenant, assistant=assistant_default(tenant=tenant))
    user, reply = pair(tenant, conversation, "Hello")
    messages_insert(conversation, user, reply)
    assert Conversation.objects.filter(pk=conversation.pk).exists() and conversation.messages.count() == 2
    first, record = complete(reply, conversation, openai_credential, latency_ms=5, statements=None)
    second, _ = complete(Message.objects.get(pk=reply.pk), conversation, openai_credential, latency_ms=9, statements=None)
    assert (first, second) == (True, False)
    assert UsageRecord.objects.get(message_id=reply.pk).cost == record.cost == Message.objects.get(pk=reply.pk).cost
    totals = Conversation.objects.get(pk=conversation.pk)
    assert (totals.input_tokens, totals.output_tokens, totals.cost) == (1_000, 500, record.cost)
    assert sorted(AttemptLog.objects.filter(tenant_id=tenant.pk).values_list("latency_ms", flat=True)) == [5, 9]

"""The chat engine's two hot-path writes, each one SQL statement: one round trip, committed on its own.

1. `messages_insert`: the user message and its reply (and a new conversation, or the existing one's
   `updated_at`) before the provider is called.
2. `reply_complete_write`: the completed reply, its ledger row, the attempt log rows and the conversation's
   totals after the call.

Through the ORM these were 8 statements and 2 transactions, and building them took about half the server's
CPU per chat call (bench/README.md). Here the rows are still model instances, and the columns and the values
come from the models' fields, as `Model.save()` takes them (`Field.pre_save`, then `get_db_prep_save`), so a new
column cannot be forgotten; only the statement is written by hand, as a data-modifying `WITH`. No model signals
are sent: nothing listens to these models' saves (tests/conversations/test_writes.py checks that).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from functools import cache
from uuid import UUID

from django.db import connection, models, transaction
from django.utils import timezone

from billing.models import UsageRecord
from conversations.models import Conversation, Message, MessageStatus
from providers.models import AttemptLog


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


@cache
def _fields(model: type[models.Model]) -> tuple[models.Field, ...]:
    """The columns an INSERT writes: every concrete field but a database-generated primary key."""
    return tuple(f for f in model._meta.concrete_fields if not f.db_returning)


def _values(obj: models.Model, fields: Iterable[models.Field], *, add: bool) -> list:
    return [f.get_db_prep_save(f.pre_save(obj, add), connection) for f in fields]


@cache
def _insert_sql(model: type[models.Model], rows: int) -> str:
    """`INSERT INTO table (columns) VALUES (…), (…)` for `rows` instances of `model`."""
    fields = _fields(model)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    columns = ", ".join(_q(f.column) for f in fields)
    return f"INSERT INTO {_q(model._meta.db_table)} ({columns}) VALUES {', '.join([row] * rows)}"


def _insert(objs: list[models.Model]) -> tuple[str, list]:
    fields = _fields(type(objs[0]))
    params: list = []
    for obj in objs:
        params.extend(_values(obj, fields, add=True))
    return _insert_sql(type(objs[0]), len(objs)), params


@cache
def _insert_select_sql(model: type[models.Model], source: str) -> str:
    """`INSERT INTO table (columns) SELECT …typed values… FROM source`: one row per row of `source`.

    The values are cast to their columns' types (a bare literal in a SELECT list would be text)."""
    fields = _fields(model)
    columns = ", ".join(_q(f.column) for f in fields)
    selected = ", ".join(f"%s::{f.cast_db_type(connection)}" for f in fields)
    return f"INSERT INTO {_q(model._meta.db_table)} ({columns}) SELECT {selected} FROM {source}"


@cache
def _update_sql(model: type[models.Model], names: tuple[str, ...]) -> tuple[str, tuple[models.Field, ...]]:
    """`SET column = %s, …` for the named fields, and those fields."""
    fields = tuple(model._meta.get_field(name) for name in names)
    return ", ".join(f"{_q(f.column)} = %s" for f in fields), fields


def _saved(*objs: models.Model) -> None:
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias


def _execute(sql: str, params: list, *, savepoint: bool) -> list[tuple]:
    """Run one statement. Inside a transaction, `savepoint=True` keeps an IntegrityError from breaking it."""
    def run() -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    if savepoint and connection.in_atomic_block:
        with transaction.atomic():
            return run()
    return run()


def messages_insert(conversation: Conversation, user_message: Message, reply: Message, *, savepoint: bool = False) -> None:
    """Store a user message and its reply. An unsaved `conversation` is inserted with them; a saved one gets its
    `updated_at` moved. Raises IntegrityError (nothing written) on a duplicate Idempotency-Key."""
    insert, params = _insert([user_message, reply])
    if conversation._state.adding:
        conversation_insert, conversation_params = _insert([conversation])
        sql, params = f"WITH new_conversation AS ({conversation_insert}) {insert}", conversation_params + params
    else:
        sql = (
            f"WITH new_messages AS ({insert}) "
            f"UPDATE {_q(Conversation._meta.db_table)} SET {_q('updated_at')} = %s WHERE {_q('id')} = %s"
        )
        params = params + [timezone.now(), conversation.pk]
    _execute(sql, params, savepoint=savepoint)
    _saved(conversation, user_message, reply)


def reply_complete_write(
    reply: Message,
    names: list[str],
    *,
    record: UsageRecord,
    attempt_logs: list[AttemptLog],
    conversation_id: UUID,
    input_tokens: int,
    output_tokens: int,
    cost: Decimal,
) -> bool:
    """Save the fields `names` of the completed reply, append its ledger row, add its usage to the conversation's
    totals and write the attempt rows, in one statement. The reply is written only if no other claimant completed it first
    (the UPDATE waits for that claimant's row lock, then re-checks the status); then the ledger row and the totals
    are not written either, so a call is never billed twice. The attempt rows are written in every case: the calls
    happened. Returns whether this call completed the reply."""
    assignments, fields = _update_sql(Message, tuple(names))
    parts = [
        f"completed AS (UPDATE {_q(Message._meta.db_table)} SET {assignments} "
        f"WHERE {_q('id')} = %s AND {_q('status')} <> %s RETURNING {_q('id')})"
    ]
    params = _values(reply, fields, add=False) + [reply.pk, MessageStatus.COMPLETED.value]
    parts.append(f"ledger AS ({_insert_select_sql(UsageRecord, 'completed')} RETURNING {_q(UsageRecord._meta.pk.column)})")
    params += _values(record, _fields(UsageRecord), add=True)
    parts.append(
        f"totals AS (UPDATE {_q(Conversation._meta.db_table)} SET "
        f"{_q('input_tokens')} = {_q('input_tokens')} + %s, {_q('output_tokens')} = {_q('output_tokens')} + %s, "
        f"{_q('cost')} = {_q('cost')} + %s, {_q('updated_at')} = %s "
        f"WHERE {_q('id')} = %s AND EXISTS (SELECT 1 FROM completed))"
    )
    params += [input_tokens, output_tokens, cost, timezone.now(), conversation_id]
    if attempt_logs:
        logs, logs_params = _insert(attempt_logs)
        parts.append(f"attempts AS ({logs})")
        params += logs_params
    ((ledger_id,),) = _execute(f"WITH {', '.join(parts)} SELECT (SELECT {_q('id')} FROM ledger)", params, savepoint=False)
    if ledger_id is None:
        return False
    record.pk = ledger_id
    _saved(record)
    return True

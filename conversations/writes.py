"""The chat engine's two hot-path writes, each one SQL statement: one round trip, committed on its own.

1. `messages_insert`: the user message and its reply (and a new conversation, or the existing one's
   `updated_at`) before the provider is called.
2. `reply_complete_write`: the completed reply, its ledger row, the attempt log rows and the conversation's
   totals after the call.

Through the ORM these were 8 statements and 2 transactions, and building them took about half the server's
CPU per chat call (bench/README.md). Here the rows are still model instances, and the columns and the values
come from the models' fields, as `Model.save()` takes them (`Field.pre_save`, then `get_prep_value`), so a new
column cannot be forgotten; only the statement is written by hand, as a data-modifying `WITH`. Each row travels
as one JSON document that PostgreSQL turns into the table's row type (`jsonb_populate_record`), so the statement
text is the same every time and is parsed once by psycopg. No model signals are sent: nothing listens to these
models' saves (tests/conversations/test_writes.py checks that). Other databases (`make run`'s SQLite demo) take the
same writes through the ORM, in one transaction each (tests/agencyhub/test_sqlite_demo.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from uuid import UUID

from django.db import connection, models, transaction
from django.db.models import F
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


def _json_default(value):
    if isinstance(value, datetime | date):
        return value.isoformat()  # full microseconds (DjangoJSONEncoder would cut them to milliseconds)
    if isinstance(value, Decimal | UUID):
        return str(value)  # exact: PostgreSQL reads a JSON string with the column type's own input function
    raise TypeError(f"cannot write {type(value).__name__} to a row document")


def _row(obj: models.Model, fields: Iterable[models.Field], *, add: bool) -> dict:
    """The row as a JSON-ready document {column: value}, each value as Model.save() takes it (Field.pre_save)."""
    return {f.column: f.get_prep_value(f.pre_save(obj, add)) for f in fields}


def _rows_param(rows: list[dict] | dict) -> str:
    return json.dumps(rows, default=_json_default, separators=(",", ":"))


@cache
def _columns(model: type[models.Model], names: tuple[str, ...] | None = None) -> tuple[str, tuple[models.Field, ...]]:
    """The quoted column list of the named fields (default: every column an INSERT writes), and those fields."""
    fields = _fields(model) if names is None else tuple(model._meta.get_field(name) for name in names)
    return ", ".join(_q(f.column) for f in fields), fields


def _record_type(model: type[models.Model]) -> str:
    return f"NULL::{_q(model._meta.db_table)}"


def _insert(objs: list[models.Model], *, when: str = "") -> tuple[str, list]:
    """`INSERT INTO table (columns) SELECT columns FROM jsonb_populate_recordset(…)` with ONE parameter: the rows as
    a JSON array, which PostgreSQL converts to the columns' types. The statement text depends only on the model (so
    psycopg parses it once) and the values travel as one string (not one bound parameter per column). `when`: an
    SQL condition for writing the rows at all."""
    model = type(objs[0])
    columns, fields = _columns(model)
    sql = (
        f"INSERT INTO {_q(model._meta.db_table)} ({columns}) SELECT {columns} "
        f"FROM jsonb_populate_recordset({_record_type(model)}, %s::jsonb)" + (f" WHERE {when}" if when else "")
    )
    return sql, [_rows_param([_row(obj, fields, add=True) for obj in objs])]


def _update(obj: models.Model, names: tuple[str, ...]) -> tuple[str, list]:
    """`SET (columns) = (SELECT columns FROM jsonb_populate_record(…))`: the named fields, one parameter."""
    model = type(obj)
    columns, fields = _columns(model, names)
    sql = f"SET ({columns}) = (SELECT {columns} FROM jsonb_populate_record({_record_type(model)}, %s::jsonb))"
    return sql, [_rows_param(_row(obj, fields, add=False))]


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


def _postgresql() -> bool:
    return connection.vendor == "postgresql"


def messages_insert(conversation: Conversation, user_message: Message, reply: Message, *, savepoint: bool = False) -> None:
    """Store a user message and its reply. An unsaved `conversation` is inserted with them; a saved one gets its
    `updated_at` moved. Raises IntegrityError (nothing written) on a duplicate Idempotency-Key."""
    if not _postgresql():
        return _messages_insert_orm(conversation, user_message, reply)
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
) -> bool:
    """Save the fields `names` of the completed reply, append its ledger row `record`, add the row's tokens and cost
    to the conversation's totals and write the attempt rows, in one statement. The reply is written only if no other
    claimant completed it first (the UPDATE waits for that claimant's row lock, then re-checks the status); then the
    ledger row and the totals are not written either, so a call is never billed twice. The attempt rows are written
    in every case: the calls happened. Returns whether this call completed the reply."""
    if not _postgresql():
        return _reply_complete_write_orm(reply, names, record=record, attempt_logs=attempt_logs)
    assignments, params = _update(reply, tuple(names))
    parts = [
        f"completed AS (UPDATE {_q(Message._meta.db_table)} {assignments} "
        f"WHERE {_q('id')} = %s AND {_q('status')} <> %s RETURNING {_q('id')})"
    ]
    params += [reply.pk, MessageStatus.COMPLETED.value]
    ledger, ledger_params = _insert([record], when="EXISTS (SELECT 1 FROM completed)")
    parts.append(f"ledger AS ({ledger} RETURNING {_q(UsageRecord._meta.pk.column)})")
    params += ledger_params
    parts.append(
        f"totals AS (UPDATE {_q(Conversation._meta.db_table)} SET "
        f"{_q('input_tokens')} = {_q('input_tokens')} + %s, {_q('output_tokens')} = {_q('output_tokens')} + %s, "
        f"{_q('cost')} = {_q('cost')} + %s, {_q('updated_at')} = %s "
        f"WHERE {_q('id')} = %s AND EXISTS (SELECT 1 FROM completed))"
    )
    input_tokens = record.input_tokens + record.cached_input_tokens + record.cache_write_tokens
    params += [input_tokens, record.output_tokens, record.cost, timezone.now(), reply.conversation_id]
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


# --- the same writes through the ORM, for databases other than PostgreSQL (`make run`'s SQLite demo) ----------------


def _messages_insert_orm(conversation: Conversation, user_message: Message, reply: Message) -> None:
    with transaction.atomic():
        if conversation._state.adding:
            conversation.save(force_insert=True)
        else:
            Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
        Message.objects.bulk_create([user_message, reply])


def _reply_complete_write_orm(reply: Message, names: list[str], *, record: UsageRecord, attempt_logs: list[AttemptLog]) -> bool:
    with transaction.atomic():
        AttemptLog.objects.bulk_create(attempt_logs)
        if not Message.objects.select_for_update().filter(pk=reply.pk).exclude(status=MessageStatus.COMPLETED).exists():
            return False
        reply.save(update_fields=names)
        record.save()
        Conversation.objects.filter(pk=reply.conversation_id).update(
            input_tokens=F("input_tokens") + record.input_tokens + record.cached_input_tokens + record.cache_write_tokens,
            output_tokens=F("output_tokens") + record.output_tokens,
            cost=F("cost") + record.cost,
            updated_at=timezone.now(),
        )
    return True

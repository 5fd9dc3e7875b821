"""`POST /v1/chat/completions`: the OpenAI Chat Completions contract on top of the same chat engine.

Each call is recorded as a conversation (grouped by the `user` field or an `X-Conversation-Id` header)
and metered like any other. Response headers say who answered, why, and what it cost.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from django.db import IntegrityError, transaction
from django.http import StreamingHttpResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conversations.access import access_assistant
from conversations.api.errors import reply_failed_error, stored_failure
from conversations.api.openai_messages import chat_messages, no_nul, stored_text
from conversations.api.openai_options import parallel_tool_calls, response_format, sampling, tool_choice, tool_definitions
from conversations.api.origins import check_origin
from conversations.api.serializers import json_problem
from conversations.api.views import idempotency_key, scoped_assistant
from conversations.images import stored_summary
from conversations.models import Assistant, Conversation, Message
from conversations.services import (
    Overrides, Posted, ReplyFailed, StreamChunk, message_post, reply_generate, reply_stream, route_reason,
)
from providers.models import cost_text

MAX_BODY_DEPTH = 64  # tool schemas nest; nothing a client sends needs more
MAX_STOP = 4  # as OpenAI


def parse_request(body: Any) -> tuple[Overrides, bool, bool, str]:
    """Validate an OpenAI request body -> (overrides, stream, include_usage, the last message's text to store)."""
    if not isinstance(body, dict):
        raise ValidationError({"body": "must be a JSON object"})
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ValidationError({"model": "required: 'auto' or a catalogue model id"})
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise ValidationError({"messages": "required: a non-empty list"})
    if body.get("n") not in (None, 1):
        raise ValidationError({"n": "only n=1 is supported"})
    system_parts, messages = chat_messages(raw_messages)
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise ValidationError({"max_tokens": "must be a positive integer"})
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 <= temperature <= 2):
        raise ValidationError({"temperature": "must be a number between 0 and 2"})
    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise ValidationError({"stop": "must be a non-empty string or a list of them"})
    if len(stop) > MAX_STOP:
        raise ValidationError({"stop": f"at most {MAX_STOP} sequences"})
    tools = tool_definitions(body.get("tools"), legacy=body.get("functions") or body.get("function_call"))
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ValidationError({"stream": "must be a boolean"})
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise ValidationError({"stream_options": "must be an object"})
    include_usage = bool((stream_options or {}).get("include_usage")) if stream else False
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise ValidationError({"user": "must be a string"})
    no_nul(user or "", "user")
    no_nul(model, "model")
    for field, value in body.items():  # the rest (tools, stop, ...); `messages` was checked part by part above
        problem = json_problem(value, max_depth=MAX_BODY_DEPTH) if field != "messages" else None
        if problem:
            raise ValidationError({field: problem})
    overrides = Overrides(
        model=model.strip(), system="\n\n".join(system_parts) if system_parts else None, messages=messages,
        max_tokens=max_tokens, temperature=float(temperature) if temperature is not None else None, stop=stop, tools=tools,
        sampling=sampling(body), response_format=response_format(body.get("response_format")),
        tool_choice=tool_choice(body.get("tool_choice"), tools) if tools else None,
        parallel_tool_calls=parallel_tool_calls(body.get("parallel_tool_calls")) if tools else None,
    )
    # The turn stored as the user's message: the last user (or tool) message, not an assistant prefill after it.
    turn = next((m for m in reversed(messages) if m.role in ("user", "tool")), messages[-1])
    return overrides, stream, include_usage, stored_text(turn)


METADATA_LIMITS = (16, 64, 512)  # pairs, key length, value length: OpenAI's limits for `metadata`


def request_metadata(body: dict) -> dict[str, str]:
    """The call's `metadata` (OpenAI's: up to 16 string pairs), stored on the message: routing rules on metadata
    (`channel == "sales"`) see it as they see the REST API's message metadata."""
    metadata = body.get("metadata")
    if metadata is None:
        return {}
    pairs, key_length, value_length = METADATA_LIMITS
    if not isinstance(metadata, dict) or len(metadata) > pairs:
        raise ValidationError({"metadata": f"must be an object of at most {pairs} string pairs"})
    for key, value in metadata.items():
        if len(key) > key_length or not isinstance(value, str) or len(value) > value_length:
            raise ValidationError({"metadata": f"{key[:key_length]!r}: keys are strings of at most {key_length} characters, "
                                               f"values strings of at most {value_length}"})
        no_nul(key + value, "metadata")
    return metadata


def _conversation_for(request: Request, user: str) -> Conversation:
    """The conversation a call belongs to; unsaved if it is a new one (message_post stores it with the messages).
    The browser origin is checked against its assistant before anything is stored."""
    tenant = request.user.tenant
    scoped = scoped_assistant(request)
    assistant = scoped or access_assistant(tenant=tenant)
    # A key limited to one assistant reaches only that assistant's conversations, as on the REST API.
    mine = {"assistant": scoped} if scoped is not None else {}
    header = request.headers.get("X-Conversation-Id", "").strip()
    if header:
        try:
            found = Conversation.objects.filter(tenant=tenant, pk=uuid.UUID(header), **mine).first()
        except ValueError:
            found = None
        if found is not None:
            check_origin(request, found.assistant)
            return found
        ref = f"conv:{header[:240]}"
    elif user:
        ref = f"user:{user[:240]}"
    else:
        # A new conversation: stored with its first messages, in message_post's one statement.
        check_origin(request, assistant)
        return Conversation(tenant=tenant, assistant=assistant, metadata={"source": "openai"})
    check_origin(request, assistant)  # before a grouping conversation is created for this call
    conversation = _grouped(tenant, ref, assistant, user)
    if scoped is not None and conversation.assistant_id != scoped.pk:
        # The same `user` (or id) already groups another assistant's calls: this key gets a conversation of its own.
        conversation = _grouped(tenant, f"{ref[:235]}@a{scoped.pk}", assistant, user)
    elif conversation.assistant_id != assistant.pk:
        check_origin(request, conversation.assistant)  # an existing group of another assistant: its origins
    return conversation


def _grouped(tenant, ref: str, assistant: Assistant, user: str) -> Conversation:
    try:
        with transaction.atomic():
            conversation, _ = Conversation.objects.get_or_create(
                tenant=tenant, client_ref=ref,
                defaults={"assistant": assistant, "external_user_id": user[:256], "metadata": {"source": "openai"}},
            )
    except IntegrityError:
        conversation = Conversation.objects.get(tenant=tenant, client_ref=ref)
    return conversation


def _usage(reply: Message) -> dict:
    return {
        "prompt_tokens": reply.input_tokens + reply.cached_input_tokens + reply.cache_write_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.total_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cached_input_tokens, "cache_write_tokens": reply.cache_write_tokens},
        "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
        # A JSON number, as OpenRouter sends it (clients add them up); the shortest float repr keeps the 8 decimals of
        # any cost under $10M. X-AgencyHub-Cost and the REST API give the Decimal as text.
        "cost": float(reply.cost) if reply.cost is not None else None,
    }


def _headers(response, reply: Message | None, *, provider: str, model: str, reason: str) -> None:
    response["X-AgencyHub-Provider"] = provider
    response["X-AgencyHub-Model"] = model
    response["X-AgencyHub-Route-Reason"] = reason.encode("ascii", "replace").decode()[:200]
    if reply is not None:
        response["X-AgencyHub-Conversation-Id"] = str(reply.conversation_id)
        response["X-AgencyHub-Message-Id"] = str(reply.pk)
        if reply.cost is not None:
            response["X-AgencyHub-Cost"] = cost_text(reply.cost)


class ChatCompletions(APIView):
    @extend_schema(
        request=inline_serializer("ChatCompletionRequest", fields={"model": serializers.CharField(), "messages": serializers.ListField()}),
        responses={200: inline_serializer("ChatCompletion", fields={"id": serializers.CharField()})},
        summary="OpenAI-compatible chat completions (streaming included)",
    )
    def post(self, request: Request):
        overrides, stream, include_usage, last_text = parse_request(request.data)
        metadata = request_metadata(request.data)
        conversation = _conversation_for(request, request.data.get("user") or "")
        images = overrides.messages[-1].images
        posted = message_post(
            tenant=request.user.tenant, conversation=conversation, content=last_text, mode="stream" if stream else "sync",
            images=stored_summary(images), metadata=metadata,
            idempotency_key=idempotency_key(request),
        )
        if stream and not posted.replayed:
            return self._stream(posted, overrides, include_usage)
        try:
            reply = reply_generate(reply_id=posted.reply.pk, overrides=overrides, claimed=posted.claimed_reply)
        except ReplyFailed as failed:
            raise reply_failed_error(failed) from None
        if reply.status == "failed":
            raise reply_failed_error(stored_failure(reply))
        if reply.status != "completed":
            raise reply_failed_error(ReplyFailed(reply, 409, "in_progress", "the first request with this Idempotency-Key is still running"))
        if stream:  # a retry (same Idempotency-Key) of a streamed call: the stored reply, as a stream
            posted.reply = reply
            return self._stream_response(_events(posted, _replayed(reply), include_usage), reply, reply.provider_kind,
                                         reply.model_name, reply.route_reason)
        tool_calls = reply.route_decision.get("tool_calls") or None
        message: dict = {"role": "assistant", "content": reply.content if not tool_calls or reply.content else None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        body = {
            "id": f"chatcmpl-{reply.pk.hex}",
            "object": "chat.completion",
            "created": int(reply.created_at.timestamp()),
            "model": reply.model_name,
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason or "stop", "logprobs": None}],
            "usage": _usage(reply),
        }
        response = Response(body, status=status.HTTP_200_OK)
        _headers(response, reply, provider=reply.provider_kind, model=reply.model_name, reason=reply.route_reason)
        return response

    def _stream(self, posted: Posted, overrides: Overrides, include_usage: bool):
        chunks = reply_stream(reply_id=posted.reply.pk, overrides=overrides, claimed=posted.claimed_reply)
        first = next(chunks)
        if first.kind == "error":
            raise reply_failed_error(first.error)
        if first.kind != "start":  # the reply was already done or failed: no answering model to name
            return self._stream_response(_events(posted, itertools.chain([first], chunks), include_usage))
        return self._stream_response(_events(posted, itertools.chain([first], chunks), include_usage), posted.reply,
                                     first.candidate.model.provider.kind, first.candidate.model.model_id,
                                     route_reason(first.plan, first.candidate))

    @staticmethod
    def _stream_response(events: Iterator[bytes], reply: Message | None = None, provider: str = "", model: str = "",
                         reason: str = "") -> StreamingHttpResponse:
        response = StreamingHttpResponse(events, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        if reply is not None:
            _headers(response, reply, provider=provider, model=model, reason=reason)
        return response


def _data(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _replayed(reply: Message) -> Iterator[StreamChunk]:
    """A completed reply as the chunks of its stream."""
    yield StreamChunk(kind="role")
    if reply.content:
        yield StreamChunk(kind="delta", text=reply.content)
    yield StreamChunk(kind="done", reply=reply)


def _events(posted: Posted, chunks: Iterator[StreamChunk], include_usage: bool) -> Iterator[bytes]:
    chunk_id = f"chatcmpl-{posted.reply.pk.hex}"
    created = int(time.time())
    model = posted.reply.model_name

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        return _data({"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
                      "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]})

    for item in chunks:
        if item.kind == "start":
            model = item.candidate.model.model_id
            yield chunk({"role": "assistant", "content": ""})
        elif item.kind == "role":
            yield chunk({"role": "assistant", "content": ""})
        elif item.kind == "delta":
            yield chunk({"content": item.text})
        elif item.kind == "done":
            reply = item.reply
            model = reply.model_name or model
            tool_calls = reply.route_decision.get("tool_calls") or []
            if tool_calls:
                yield chunk({"tool_calls": [{"index": i, **call} for i, call in enumerate(tool_calls)]})
            yield chunk({}, reply.finish_reason or "stop")
            if include_usage:
                yield _data({"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
                             "choices": [], "usage": _usage(reply)})
            yield b"data: [DONE]\n\n"
        elif item.kind == "error":
            failed = item.error
            yield _data({"error": {"type": "provider_error", "code": failed.code, "message": str(failed)}})


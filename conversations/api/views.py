"""Thin views: validate, call one service, present the result."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conversations.access import NotFound, access_assistant, access_conversation, access_message
from conversations.api.errors import ApiError, not_found, reply_failed_error, stored_failure
from conversations.api.origins import check_origin
from conversations.api.serializers import ConversationCreateInput, FeedbackInput, MessagePostInput
from conversations.images import parse_images, stored_whole
from conversations.models import ApiKeyScope, Assistant, Conversation, Message, MessageRole
from conversations.presenters import conversation_payload, message_payload
from conversations.services import (
    Posted, ReplyFailed, StreamChunk, conversation_start, feedback_set, message_post, reply_generate, reply_stream, route_reason,
)
from tenants.config_cache import memo

IDEMPOTENCY_HEADER = OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
                                      description="A retry with the same key returns the first result; the provider is never called twice.")
MAX_IDEMPOTENCY_KEY = 255  # Message.idempotency_key
log = logging.getLogger(__name__)
GENERIC = inline_serializer("Envelope", fields={"id": serializers.CharField()})


def scoped_assistant(request: Request) -> Assistant | None:
    """The one assistant this API key is limited to, if any (cached: tenants.config_cache)."""
    def build() -> Assistant | None:
        scope = ApiKeyScope.objects.filter(api_key=request.auth).select_related("assistant").first()
        return scope.assistant if scope else None

    assistant = memo(("key-assistant", request.auth.pk), build)
    if assistant is not None and assistant.tenant_id != request.auth.tenant_id:
        # Refused when saved (ApiKeyScope.clean); one stored otherwise must not run another client's assistant.
        log.error("API key %s is limited to assistant %s of another tenant: refused", request.auth.pk, assistant.pk)
        raise ApiError(status_code=403, type="permission_error", code="key_misconfigured",
                       message="this API key is limited to an assistant it cannot use; ask the agency for a new key")
    return assistant


def _conversation(request: Request, conversation_id) -> Conversation:
    try:
        conversation = access_conversation(tenant=request.user.tenant, conversation_id=conversation_id)
    except NotFound:
        raise not_found("conversation") from None
    scoped = scoped_assistant(request)
    if scoped is not None and conversation.assistant_id != scoped.pk:
        raise not_found("conversation")
    return conversation


def _message(request: Request, message_id) -> Message:
    try:
        message = access_message(tenant=request.user.tenant, message_id=message_id)
    except NotFound:
        raise not_found("message") from None
    scoped = scoped_assistant(request)
    if scoped is not None and message.conversation.assistant_id != scoped.pk:
        raise not_found("message")
    return message


class ConversationListCreate(APIView):
    @extend_schema(request=ConversationCreateInput, responses={201: GENERIC}, summary="Start a conversation")
    def post(self, request: Request) -> Response:
        data = ConversationCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = request.user.tenant
        scoped = scoped_assistant(request)
        slug = data.validated_data.get("assistant") or None
        if scoped is not None and slug not in (None, scoped.slug):
            raise not_found("assistant")
        try:
            assistant = scoped or access_assistant(tenant=tenant, slug=slug)
        except NotFound:
            raise not_found(f"assistant {slug!r}") from None
        check_origin(request, assistant)
        conversation = conversation_start(
            tenant=tenant, assistant=assistant, external_user_id=data.validated_data["external_user_id"],
            metadata=data.validated_data["metadata"], callback_url=data.validated_data["callback_url"],
        )
        payload = conversation_payload(conversation, [])
        payload["greeting"] = assistant.greeting or None
        return Response(payload, status=status.HTTP_201_CREATED)


class ConversationDetail(APIView):
    @extend_schema(responses={200: GENERIC}, summary="A conversation with its messages and totals")
    def get(self, request: Request, conversation_id: str) -> Response:
        conversation = _conversation(request, conversation_id)
        check_origin(request, conversation.assistant)
        messages = list(conversation.messages.select_related("conversation").order_by("created_at"))
        return Response(conversation_payload(conversation, messages))


def _posted_payload(posted: Posted) -> dict:
    payload = message_payload(posted.reply)
    payload["user_message"] = message_payload(posted.user_message)
    return payload


def idempotency_key(request: Request) -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise ValidationError({"Idempotency-Key": f"at most {MAX_IDEMPOTENCY_KEY} characters"})
    return key


def sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class MessageCreate(APIView):
    @extend_schema(request=MessagePostInput, parameters=[IDEMPOTENCY_HEADER], responses={201: GENERIC, 202: GENERIC},
                   summary="Post a message: sync (201 with the reply), stream (server-sent events) or async (202)")
    def post(self, request: Request, conversation_id: str):
        conversation = _conversation(request, conversation_id)
        check_origin(request, conversation.assistant)
        data = MessagePostInput(data=request.data)
        data.is_valid(raise_exception=True)
        images = parse_images(request.data.get("images"))
        mode = data.validated_data["mode"]
        posted = message_post(
            tenant=request.user.tenant, conversation=conversation, content=data.validated_data["content"], mode=mode,
            escalate=data.validated_data["escalate"], metadata=data.validated_data["metadata"], images=stored_whole(images),
            idempotency_key=idempotency_key(request),
        )
        if mode == "async" or (posted.replayed and posted.reply.mode == "async"):
            response = Response(_posted_payload(posted), status=status.HTTP_202_ACCEPTED)
            response["Location"] = f"/api/v1/messages/{posted.reply.pk}"
            return response
        if mode == "stream" and not posted.replayed:
            return self._stream(posted)
        try:
            reply = reply_generate(reply_id=posted.reply.pk, claimed=posted.claimed_reply)
        except ReplyFailed as failed:
            raise reply_failed_error(failed) from None
        if posted.replayed and reply.status == "failed":
            raise reply_failed_error(stored_failure(reply))
        posted.reply = reply
        if mode == "stream" and reply.status == "completed":  # a retry of a streamed post: the stored reply, as a stream
            return _event_stream(_replayed_events(posted))
        code = status.HTTP_201_CREATED if reply.status == "completed" else status.HTTP_202_ACCEPTED
        return Response(_posted_payload(posted), status=code)

    def _stream(self, posted: Posted):
        chunks = reply_stream(reply_id=posted.reply.pk, claimed=posted.claimed_reply)
        first = next(chunks)
        if first.kind == "error":  # nothing reached the client yet: answer with a plain error status
            raise reply_failed_error(first.error)
        return _event_stream(_sse_events(posted, first, chunks))


def _event_stream(events: Iterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def _replayed_events(posted: Posted) -> Iterator[bytes]:
    """The events of a completed reply's stream, from what was stored."""
    reply = posted.reply
    yield sse("message", {"user_message": message_payload(posted.user_message), "reply_id": str(reply.pk)})
    yield sse("start", {"model": reply.model_name, "provider": reply.provider_kind, "route_reason": reply.route_reason})
    if reply.content:
        yield sse("delta", {"text": reply.content})
    yield sse("done", message_payload(reply))


def _sse_events(posted: Posted, first: StreamChunk, chunks: Iterator[StreamChunk]) -> Iterator[bytes]:
    yield sse("message", {"user_message": message_payload(posted.user_message), "reply_id": str(posted.reply.pk)})
    for chunk in itertools.chain([first], chunks):
        if chunk.kind == "start":
            yield sse("start", {"model": chunk.candidate.model.model_id, "provider": chunk.candidate.model.provider.kind,
                                "route_reason": route_reason(chunk.plan, chunk.candidate)})
        elif chunk.kind == "delta":
            yield sse("delta", {"text": chunk.text})
        elif chunk.kind == "done":
            yield sse("done", message_payload(chunk.reply))
        elif chunk.kind == "error":
            failed = chunk.error
            yield sse("error", {"error": {"type": "provider_error", "code": failed.code, "message": str(failed)},
                                "message": message_payload(failed.reply)})



class MessageDetail(APIView):
    @extend_schema(responses={200: GENERIC}, summary="A message (poll an async reply's status)")
    def get(self, request: Request, message_id: str) -> Response:
        message = _message(request, message_id)
        check_origin(request, message.conversation.assistant)
        return Response(message_payload(message))


class FeedbackCreate(APIView):
    @extend_schema(request=FeedbackInput, responses={201: GENERIC}, summary="Rate a reply (+1 / -1)")
    def post(self, request: Request, message_id: str) -> Response:
        message = _message(request, message_id)
        check_origin(request, message.conversation.assistant)
        data = FeedbackInput(data=request.data)
        data.is_valid(raise_exception=True)
        if message.role != MessageRole.ASSISTANT:
            raise serializers.ValidationError({"message_id": "feedback applies to assistant replies"})
        feedback = feedback_set(message=message, **data.validated_data)
        return Response(
            {"message_id": str(message.pk), "rating": feedback.rating, "comment": feedback.comment},
            status=status.HTTP_201_CREATED,
        )

"""Tenant data is reached only through these: another tenant's id answers exactly like a missing one."""

from __future__ import annotations

from uuid import UUID

from django.db import IntegrityError, transaction

from conversations.models import Assistant, Conversation, Message
from tenants.config_cache import memo
from tenants.models import Tenant


class NotFound(LookupError):
    pass


def _uuid(value: str | UUID) -> UUID:
    try:
        return value if isinstance(value, UUID) else UUID(str(value))
    except ValueError as exc:
        raise NotFound("not found") from exc


def access_conversation(*, tenant: Tenant, conversation_id: str | UUID) -> Conversation:
    conversation = (
        Conversation.objects.select_related("assistant").filter(tenant=tenant, pk=_uuid(conversation_id)).first()
    )
    if conversation is None:
        raise NotFound(f"conversation {conversation_id} not found")
    return conversation


def access_message(*, tenant: Tenant, message_id: str | UUID) -> Message:
    message = Message.objects.select_related("conversation", "reply_to").filter(tenant=tenant, pk=_uuid(message_id)).first()
    if message is None:
        raise NotFound(f"message {message_id} not found")
    return message


def assistant_default(*, tenant: Tenant) -> Assistant:
    """Every tenant has a default assistant; it is created on first use. Cached: tenants.config_cache."""
    assistant = memo(("default-assistant", tenant.pk), lambda: Assistant.objects.filter(tenant=tenant, is_default=True).first())
    if assistant is not None:
        return assistant
    try:
        with transaction.atomic():
            return Assistant.objects.create(tenant=tenant, name="Default assistant", slug="default", is_default=True)
    except IntegrityError:  # created concurrently, or a non-default assistant already uses the slug
        existing = Assistant.objects.filter(tenant=tenant, is_default=True).first()
        if existing is not None:
            return existing
        with transaction.atomic():
            return Assistant.objects.create(tenant=tenant, name="Default assistant", slug="default-assistant", is_default=True)


def access_assistant(*, tenant: Tenant, slug: str | None = None) -> Assistant:
    if not slug:
        return assistant_default(tenant=tenant)
    assistant = Assistant.objects.filter(tenant=tenant, slug=slug, is_active=True).first()
    if assistant is None:
        raise NotFound(f"assistant {slug!r} not found")
    return assistant

"""Personas for the control panel: a superuser (pytest-django's admin_client), agency staff, finance."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from providers.models import LLMModel, ModelPrice, Provider, ProviderKind


def member_of(group: str, username: str) -> Client:
    user = User.objects.create_user(username, password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def staff_client(db) -> Client:
    return member_of("Agency staff", "sam")


@pytest.fixture
def finance_client(db) -> Client:
    return member_of("Finance", "fiona")


@pytest.fixture
def openai(db) -> Provider:
    return Provider.objects.get_or_create(kind=ProviderKind.OPENAI, defaults={"base_url": "https://api.openai.com/v1"})[0]


def llm_model(provider: Provider, model_id: str, *, priced: bool = True, context_window: int = 128_000) -> LLMModel:
    model = LLMModel.objects.create(
        provider=provider, model_id=model_id, display_name=model_id.upper(), context_window=context_window,
        max_output_tokens=4096, is_enabled=priced,
    )
    if priced:
        ModelPrice.objects.create(
            model=model, valid_from=timezone.now() - timezone.timedelta(days=1),
            input_per_mtok=Decimal("1"), output_per_mtok=Decimal("2"),
        )
    return model

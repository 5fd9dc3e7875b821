"""The admin will not enable a model without a price: a call to it could not be billed."""

import pytest

from providers.models import LLMModel, ModelPrice, Provider, ProviderKind

pytestmark = pytest.mark.django_db


@pytest.fixture
def provider():
    return Provider.objects.get_or_create(kind=ProviderKind.OPENAI, defaults={"base_url": "https://api.openai.com/v1"})[0]


def model_form(provider, *, enabled: bool, prices: list[dict] | None = None, initial_prices: int = 0) -> dict:
    data = {
        "provider": provider.pk, "model_id": "gpt-new", "display_name": "GPT new", "context_window": 128000,
        "max_output_tokens": 16000, "capabilities": "[]", "tier": "standard", "supports_temperature": "on",
        "prices-TOTAL_FORMS": str(initial_prices + len(prices or [])), "prices-INITIAL_FORMS": str(initial_prices),
        "prices-MIN_NUM_FORMS": "0", "prices-MAX_NUM_FORMS": "1000",
    }
    if enabled:
        data["is_enabled"] = "on"
    for index, price in enumerate(prices or [], start=initial_prices):
        data.update({f"prices-{index}-{key}": value for key, value in price.items()})
    return data


PRICE = {"valid_from_0": "2026-11-01", "valid_from_1": "00:00:00", "input_per_mtok": "1.5", "output_per_mtok": "6", "tiers": "[]"}


def test_an_enabled_model_without_a_price_is_refused(admin_client, provider):
    response = admin_client.post("/admin/providers/llmmodel/add/", model_form(provider, enabled=True))

    assert response.status_code == 200
    assert "has no price" in response.content.decode()
    assert not LLMModel.objects.filter(model_id="gpt-new").exists()


def test_a_model_can_be_enabled_together_with_its_first_price(admin_client, provider):
    response = admin_client.post("/admin/providers/llmmodel/add/", model_form(provider, enabled=True, prices=[PRICE]))

    assert response.status_code == 302, response.content.decode()[:2000]
    model = LLMModel.objects.get(model_id="gpt-new")
    assert model.is_enabled
    assert ModelPrice.objects.get(model=model).input_per_mtok == 1.5


def test_a_disabled_model_may_wait_for_its_price_then_enabling_it_is_refused(admin_client, provider):
    assert admin_client.post("/admin/providers/llmmodel/add/", model_form(provider, enabled=False)).status_code == 302
    model = LLMModel.objects.get(model_id="gpt-new")

    response = admin_client.post(f"/admin/providers/llmmodel/{model.pk}/change/", model_form(provider, enabled=True))

    assert "has no price" in response.content.decode()
    model.refresh_from_db()
    assert not model.is_enabled

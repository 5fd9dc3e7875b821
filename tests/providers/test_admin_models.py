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


def test_a_price_that_starts_later_does_not_count_as_in_force(admin_client, provider):
    future = {**PRICE, "valid_from_0": "2099-01-01"}
    response = admin_client.post("/admin/providers/llmmodel/add/", model_form(provider, enabled=True, prices=[future]))

    assert response.status_code == 200
    assert "has no price in force" in response.content.decode()
    assert not LLMModel.objects.filter(model_id="gpt-new").exists()


def test_deleting_the_last_price_of_an_enabled_model_is_refused(admin_client, provider):
    assert admin_client.post("/admin/providers/llmmodel/add/", model_form(provider, enabled=True, prices=[PRICE])).status_code == 302
    model = LLMModel.objects.get(model_id="gpt-new")
    price = ModelPrice.objects.get(model=model)
    data = model_form(provider, enabled=True, initial_prices=1)
    data.update({"prices-0-id": str(price.pk), "prices-0-model": str(model.pk), "prices-0-DELETE": "on"})

    response = admin_client.post(f"/admin/providers/llmmodel/{model.pk}/change/", data)

    assert response.status_code == 200
    assert "has no price in force" in response.content.decode()
    assert ModelPrice.objects.filter(pk=price.pk).exists()


def test_the_enable_action_refuses_a_model_whose_only_price_starts_later(admin_client, provider):
    model = LLMModel.objects.create(provider=provider, model_id="gpt-later", display_name="Later", context_window=8000,
                                    max_output_tokens=1000, tier="standard", is_enabled=False)
    ModelPrice.objects.create(model=model, valid_from="2099-01-01T00:00:00Z", input_per_mtok=1, output_per_mtok=2)

    response = admin_client.post("/admin/providers/llmmodel/", {"action": "enable", "_selected_action": [model.pk]}, follow=True)

    assert "has no price in force" in response.content.decode()
    model.refresh_from_db()
    assert not model.is_enabled

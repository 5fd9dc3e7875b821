from datetime import UTC, datetime

import pytest

from providers.catalog import catalog_load
from providers.models import LLMModel

# Before any ledger row of the tests: every call is priced at these catalogue prices.
CATALOG_AT = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture
def models():
    catalog_load(at=CATALOG_AT)
    return {
        "haiku": LLMModel.objects.get(provider__kind="anthropic", model_id="claude-haiku-4-5"),
        "mini": LLMModel.objects.get(provider__kind="openai", model_id="gpt-4o-mini"),
    }

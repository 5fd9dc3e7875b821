pytest_plugins = ["tests.simulator_plugin", "tests.chat_fixtures"]

import pytest
from rest_framework.test import APIClient

from providers.adapters.base import clients
from providers.metrics import metrics_pending_drop
from providers.state import shared_state
from tenants.config_cache import forget_local
from tenants.services import tenant_create


@pytest.fixture(autouse=True)
def clean_shared_state():
    """Breakers, cool-downs, budgets and rate limits live in Redis: every test starts from none (and with no cached
    configuration: test databases are rolled back, the cache would outlive them)."""
    metrics_pending_drop()  # first: it waits for a counter write in progress, which the flush below then removes
    shared_state().flush()
    forget_local()  # the per-process configuration cache, too
    yield
    shared_state().flush()


@pytest.fixture
def tenant_and_key(db):
    tenant, issued = tenant_create(slug="acme", name="Acme")
    return tenant, issued.raw


@pytest.fixture
def tenant(tenant_and_key):
    return tenant_and_key[0]


@pytest.fixture
def api_client(tenant_and_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tenant_and_key[1]}")
    return client

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from rest_framework.test import APIClient

from providers.catalog import catalog_load
from providers.models import LLMModel
from providers.services import credential_set, provider_configure
from routing.models import RoutingPolicy, RoutingTarget, TargetFallback
from tenants.services import tenant_create

CHAIN = [("anthropic", "claude-haiku-4-5"), ("openai", "gpt-4o-mini"), ("openrouter", "anthropic/claude-haiku-4.5")]


@pytest.fixture
def catalog(db):
    catalog_load()


@pytest.fixture
def providers_on_simulator(simulator, catalog):
    for kind, url in (("anthropic", simulator.anthropic_base_url), ("openai", simulator.openai_base_url), ("openrouter", simulator.openrouter_base_url)):
        provider_configure(kind=kind, base_url=url)
        credential_set(kind=kind, key=f"sk-agency-{kind}", label="agency")
    return simulator


def model(kind: str, model_id: str) -> LLMModel:
    return LLMModel.objects.get(provider__kind=kind, model_id=model_id)


def chain_target(name: str, chain: list[tuple[str, str]], **kwargs) -> RoutingTarget:
    models = [model(*m) for m in chain]
    target = RoutingTarget.objects.create(name=name, model=models[0], **kwargs)
    for position, fallback in enumerate(models[1:], start=1):
        TargetFallback.objects.create(target=target, model=fallback, position=position)
    return target


@pytest.fixture
def policy(tenant, providers_on_simulator):
    return RoutingPolicy.objects.create(name="Acme", tenant=tenant, default_target=chain_target("Economy chain", CHAIN))


@pytest.fixture
def conversation_id(api_client, policy) -> str:
    response = api_client.post("/api/v1/conversations", {}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


@pytest.fixture
def outsider_client(db) -> APIClient:
    _, issued = tenant_create(slug="outsider", name="Outsider")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw}")
    return client


def post_message(client, conversation_id, content="Hello there", **extra):
    headers = extra.pop("headers", {})
    return client.post(f"/api/v1/conversations/{conversation_id}/messages", {"content": content, **extra}, format="json", headers=headers)


def sse_events(response) -> list[tuple[str, dict]]:
    import json

    raw = b"".join(response.streaming_content).decode()
    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((lines.get("event"), json.loads(lines["data"])))
    return events


def live_chain(simulator, tenant, *, max_tokens: int) -> None:
    """For tests through a live server (transactional_db): the catalogue, the three providers on the simulator with
    agency keys, the tenant's policy on CHAIN, and its default assistant writing at most `max_tokens`."""
    from conversations.access import assistant_default

    catalog_load()
    for kind, url in (("anthropic", simulator.anthropic_base_url), ("openai", simulator.openai_base_url), ("openrouter", simulator.openrouter_base_url)):
        provider_configure(kind=kind, base_url=url)
        credential_set(kind=kind, key=f"sk-{kind}", label="agency")
    RoutingPolicy.objects.create(name="Acme", tenant=tenant, default_target=chain_target("Economy", CHAIN))
    assistant = assistant_default(tenant=tenant)
    assistant.default_max_tokens = max_tokens
    assistant.save()


def post_at_once(live_server, key: str, count: int) -> list[int]:
    """`count` messages posted at the same time through the live API, each in a conversation of its own: their statuses."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def call(i: int) -> int:
        conv = urllib.request.urlopen(urllib.request.Request(f"{live_server.url}/api/v1/conversations", data=b"{}", headers=headers))
        conversation = json.loads(conv.read())["id"]
        connection.close()  # this thread's own connection: the test database is dropped at the end
        try:
            return urllib.request.urlopen(urllib.request.Request(
                f"{live_server.url}/api/v1/conversations/{conversation}/messages",
                data=json.dumps({"content": f"hello {i}"}).encode(), headers=headers)).status
        except urllib.error.HTTPError as exc:
            return exc.code

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(call, range(count)))

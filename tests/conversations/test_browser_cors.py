"""Browser calls: preflights, CORS headers on what an allowed origin gets, 403 for other origins on every endpoint."""

import pytest

from billing.models import UsageRecord
from conversations.models import ApiKeyScope, Assistant, Conversation, Feedback, Message
from tenants.models import ApiKey
from tests.conversations.conftest import post_message, sse_events

SHOP = "https://shop.example"
EVIL = "https://evil.example"
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hello from the shop"}]}


@pytest.fixture
def web_client(api_client, policy, tenant):
    """The browser case: a key limited to one assistant, which lists the shop's origin."""
    web = Assistant.objects.create(tenant=tenant, name="Web", slug="web", allowed_origins=[SHOP])
    ApiKeyScope.objects.create(api_key=ApiKey.objects.get(tenant=tenant), assistant=web)
    return api_client


def _reply_id(client, **headers) -> str:
    conversation_id = client.post("/api/v1/conversations", {}, format="json", headers=headers).json()["id"]
    response = post_message(client, conversation_id, headers=headers)
    assert response.status_code == 201, response.content
    return response.json()["id"]


def _listed(header: str) -> set[str]:
    return {name.strip().lower() for name in header.split(",")}


def _assert_cors(response, origin=SHOP):
    assert response["Access-Control-Allow-Origin"] == origin
    assert "origin" in _listed(response["Vary"])
    assert {"retry-after", "location", "x-agencyhub-cost", "x-agencyhub-conversation-id"} <= _listed(response["Access-Control-Expose-Headers"])


@pytest.mark.parametrize("path", ["/api/v1/conversations/some-id/messages", "/api/v1/messages/some-id", "/v1/chat/completions", "/api/v1/usage"])
def test_it_answers_a_preflight_without_a_key(client, path):
    requested = "authorization, content-type, idempotency-key, x-stainless-lang, x-stainless-retry-count, x-stainless-timeout"
    response = client.options(path, headers={
        "Origin": SHOP, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": requested,
    })
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert _listed(response["Access-Control-Allow-Methods"]) == {"get", "post", "options"}
    assert _listed(requested) | {"x-conversation-id", "openai-organization"} <= _listed(response["Access-Control-Allow-Headers"])
    assert int(response["Access-Control-Max-Age"]) > 0
    assert "origin" in _listed(response["Vary"])


def test_a_preflight_asking_for_a_malformed_header_name_is_not_granted_it(client):
    response = client.options("/v1/chat/completions", headers={
        "Origin": SHOP, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-stainless-os, bad header",
    })
    allowed = _listed(response["Access-Control-Allow-Headers"])
    assert "x-stainless-os" in allowed and "bad header" not in allowed


def test_an_options_request_that_is_not_a_preflight_is_left_to_the_api(client, db):
    assert client.options("/api/v1/usage", headers={"Origin": SHOP}).status_code == 401


def test_an_allowed_origin_can_read_every_answer(web_client, simulator):
    shop = {"Origin": SHOP}
    created = web_client.post("/api/v1/conversations", {}, format="json", headers=shop)
    _assert_cors(created)
    conversation_id = created.json()["id"]
    posted = post_message(web_client, conversation_id, headers=shop)
    assert posted.status_code == 201
    _assert_cors(posted)
    reply_id = posted.json()["id"]
    for response in (
        web_client.get(f"/api/v1/messages/{reply_id}", headers=shop),
        web_client.post(f"/api/v1/messages/{reply_id}/feedback", {"rating": 1}, format="json", headers=shop),
        web_client.get("/api/v1/usage", headers=shop),
        web_client.get("/v1/models", headers=shop),
    ):
        assert response.status_code in (200, 201), response.content
        _assert_cors(response)
    completion = web_client.post("/v1/chat/completions", CHAT, format="json", headers=shop)
    assert completion.status_code == 200 and completion["X-AgencyHub-Cost"]
    _assert_cors(completion)

    streamed = post_message(web_client, conversation_id, mode="stream", headers=shop)
    _assert_cors(streamed)
    assert sse_events(streamed)[-1][0] == "done"

    # errors after the origin was checked: every provider overloaded
    simulator.add_fault(fault="overloaded")
    failed = post_message(web_client, conversation_id, "anyone?", headers=shop)
    assert failed.status_code == 503 and failed["Retry-After"]
    _assert_cors(failed)
    failed_completion = web_client.post("/v1/chat/completions", CHAT, format="json", headers=shop)
    assert failed_completion.status_code == 503
    _assert_cors(failed_completion)


def test_an_error_answered_before_the_origin_is_known_is_readable(web_client, client):
    shop = {"Origin": SHOP}
    bad_key = client.post("/v1/chat/completions", CHAT, content_type="application/json",
                          headers={**shop, "Authorization": "Bearer ahk_wrong"})
    assert bad_key.status_code == 401
    _assert_cors(bad_key)
    missing = web_client.get("/api/v1/messages/00000000-0000-0000-0000-000000000000", headers=shop)
    assert missing.status_code == 404
    _assert_cors(missing)


def test_a_disallowed_origin_gets_403_on_every_endpoint_and_no_provider_is_called(web_client, simulator):
    reply_id = _reply_id(web_client)
    simulator.clear_requests()
    messages, usage = Message.objects.count(), UsageRecord.objects.count()
    conversations = Conversation.objects.count()
    evil = {"Origin": EVIL}
    for response in (
        web_client.post("/v1/chat/completions", CHAT, format="json", headers=evil),
        web_client.post("/v1/chat/completions", {**CHAT, "user": "visitor-9"}, format="json", headers=evil),
        web_client.post("/v1/chat/completions", {**CHAT, "stream": True}, format="json", headers=evil),
        web_client.get(f"/api/v1/messages/{reply_id}", headers=evil),
        web_client.post(f"/api/v1/messages/{reply_id}/feedback", {"rating": -1}, format="json", headers=evil),
        web_client.get("/api/v1/usage", headers=evil),
        web_client.get("/v1/models", headers=evil),
    ):
        assert response.status_code == 403, response.content
        assert response.json()["error"] == {
            "type": "permission_error", "code": "origin_not_allowed", "message": "origin https://evil.example is not allowed for assistant 'web'",
        }
        assert "Access-Control-Allow-Origin" not in response
    assert simulator.requests() == []
    assert Message.objects.count() == messages and UsageRecord.objects.count() == usage
    assert Conversation.objects.count() == conversations  # not even an empty one for the `user` grouping
    assert not Feedback.objects.exists()


def test_without_an_origin_nothing_changes(web_client):
    reply_id = _reply_id(web_client)
    for response in (
        web_client.get(f"/api/v1/messages/{reply_id}"),
        web_client.post(f"/api/v1/messages/{reply_id}/feedback", {"rating": 1}, format="json"),
        web_client.get("/api/v1/usage"),
        web_client.post("/v1/chat/completions", CHAT, format="json"),
        web_client.get("/api/v1/messages/00000000-0000-0000-0000-000000000000"),
    ):
        assert response.status_code in (200, 201, 404), response.content
        assert "Access-Control-Allow-Origin" not in response and "Access-Control-Expose-Headers" not in response


def test_an_unlimited_key_is_checked_against_the_assistant_it_acts_on(api_client, policy, tenant):
    Assistant.objects.create(tenant=tenant, name="Web", slug="web", allowed_origins=[SHOP])
    shop = {"Origin": SHOP}
    conversation_id = api_client.post("/api/v1/conversations", {"assistant": "web"}, format="json", headers=shop).json()["id"]
    reply_id = post_message(api_client, conversation_id, headers=shop).json()["id"]
    assert api_client.get(f"/api/v1/messages/{reply_id}", headers=shop).status_code == 200
    # the key's own endpoints go by the tenant's default assistant, which lists no origin
    assert api_client.get("/api/v1/usage", headers=shop).status_code == 403
    assert api_client.post("/v1/chat/completions", CHAT, format="json", headers=shop).status_code == 403


# --- what an assistant may list, and how it matches ---------------------------------------------------------------


@pytest.mark.parametrize("stored, origin, allowed", [
    ("https://shop.example", "https://s", False),  # text, not a list: allows nothing (it matched by substring)
    ("https://*.shop.example", EVIL, False),  # a "*" inside text is not "any origin"
    (["HTTPS://Shop.Example:443/"], SHOP, True),  # saved before entries were normalized: still meant as the shop
    (["https://*.shop.example"], "https://www.shop.example", True),
    (["https://*.shop.example"], SHOP, False),  # a subdomain wildcard is not the apex
    (["https://*.shop.example"], "https://evilshop.example", False),
    ([SHOP], "https://shop.example.evil.example", False),
    ([SHOP], "http://shop.example", False),
    (["*"], EVIL, True),
])
def test_an_origin_matches_an_entry_exactly_or_as_a_listed_subdomain(web_client, tenant, stored, origin, allowed):
    Assistant.objects.filter(tenant=tenant, slug="web").update(allowed_origins=stored)  # as stored, unchecked
    response = web_client.post("/api/v1/conversations", {}, format="json", headers={"Origin": origin})
    assert response.status_code == (201 if allowed else 403), response.content


def test_an_assistant_saves_only_origins(tenant):
    from django.core.exceptions import ValidationError

    assistant = Assistant(tenant=tenant, name="Shop", slug="shop", allowed_origins=["HTTPS://Shop.Example/", "https://*.shop.example", SHOP])
    assistant.full_clean()
    assert assistant.allowed_origins == [SHOP, "https://*.shop.example"]
    assistant.allowed_origins = None  # an emptied admin field: no origins, not a 500
    assistant.full_clean()
    assert assistant.allowed_origins == []
    for bad, says in ((SHOP, "must be a list"), (["shop.example"], "entry 1: 'shop.example' needs http:// or https://"),
                      ([SHOP, "https://shop.example/cart"], "entry 2"), ([{"a": 1}], "entry 1"), (["https://x.*.example"], "wildcard")):
        assistant.allowed_origins = bad
        with pytest.raises(ValidationError) as refused:
            assistant.full_clean()
        assert says in str(refused.value.message_dict["allowed_origins"])


def test_a_key_cannot_be_limited_to_another_clients_assistant(api_client, tenant, policy):
    from django.core.exceptions import ValidationError

    from tenants.services import tenant_create

    other, _ = tenant_create(slug="other", name="Other")
    theirs = Assistant.objects.create(tenant=other, name="Theirs", slug="theirs")
    scope = ApiKeyScope(api_key=ApiKey.objects.get(tenant=tenant), assistant=theirs)
    with pytest.raises(ValidationError, match="belongs to another client"):
        scope.full_clean()
    scope.save()  # stored anyway (before the check existed): the key is refused, never runs their assistant
    response = api_client.post("/api/v1/conversations", {}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "key_misconfigured"
    assert not Conversation.objects.exists()

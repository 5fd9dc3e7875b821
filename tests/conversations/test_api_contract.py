import pytest
from rest_framework.test import APIClient

from conversations.models import Assistant, ApiKeyScope, Conversation
from tenants.models import ApiKey
from tests.conversations.conftest import post_message


def test_an_outsider_gets_404_for_every_id(api_client, conversation_id, outsider_client):
    reply_id = post_message(api_client, conversation_id).json()["id"]
    for response in (
        outsider_client.get(f"/api/v1/conversations/{conversation_id}"),
        outsider_client.post(f"/api/v1/conversations/{conversation_id}/messages", {"content": "hi"}, format="json"),
        outsider_client.get(f"/api/v1/messages/{reply_id}"),
        outsider_client.post(f"/api/v1/messages/{reply_id}/feedback", {"rating": 1}, format="json"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found_error"
    missing = api_client.get("/api/v1/conversations/00000000-0000-0000-0000-000000000000")
    garbage = api_client.get("/api/v1/conversations/not-a-uuid")
    assert missing.status_code == garbage.status_code == 404
    assert missing.json()["error"]["message"] == outsider_client.get(f"/api/v1/conversations/{conversation_id}").json()["error"]["message"]


@pytest.mark.parametrize("debug", [False, True])
def test_an_unknown_api_path_answers_the_error_shape(api_client, settings, debug):
    settings.DEBUG = debug  # make run serves with DEBUG, where Django would show its HTML page instead of handler404
    for response in (api_client.get("/api/v1/nope"), api_client.post("/v1/nope", {}, format="json")):
        assert response.status_code == 404 and response["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "not_found"


def test_malformed_bodies_answer_400_naming_the_field(api_client, conversation_id):
    url = f"/api/v1/conversations/{conversation_id}/messages"
    broken = api_client.post(url, data="{not json", content_type="application/json")
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "malformed_body"
    for body, field in (({}, "content"), ({"content": "   "}, "content"), ({"content": "hi", "mode": "fast"}, "mode"),
                        ({"content": "hi", "escalate": "maybe"}, "escalate"), ({"content": "hi", "escalate": "yes"}, "escalate"),
                        ({"content": 5}, "content"), ({"content": ["hi"]}, "content"), ({"content": "a\x00b"}, "content"),
                        ({"content": "hi", "metadata": {"page": ["x\x00"]}}, "metadata")):
        response = api_client.post(url, body, format="json")
        assert response.status_code == 400, body
        assert response.json()["error"]["message"].startswith(f"{field}:")


def test_text_postgresql_cannot_store_is_a_400_on_every_entry_point(api_client, conversation_id):
    """A NUL character cannot be stored in PostgreSQL text or jsonb: refused up front, never a 500."""
    created = api_client.post("/api/v1/conversations", {"metadata": {"k": "\x00"}}, format="json")
    assert created.status_code == 400 and created.json()["error"]["message"].startswith("metadata:")
    for body, field in (
        ({"model": "auto", "messages": [{"role": "user", "content": "a\x00b"}]}, "messages[0].content"),
        ({"model": "auto", "messages": [{"role": "user", "content": [{"type": "text", "text": "\x00"}]}]}, "messages[0].content[0]"),
        ({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "user": "u\x00"}, "user"),
    ):
        response = api_client.post("/v1/chat/completions", body, format="json")
        assert response.status_code == 400, body
        assert response.json()["error"]["message"].startswith(f"{field}:")


def test_oversized_bodies_answer_413(api_client, conversation_id, settings):
    settings.MAX_REQUEST_BYTES = 10_000
    response = post_message(api_client, conversation_id, "x" * 20_000)
    assert response.status_code == 413 and response.json()["error"]["type"] == "request_too_large"


def test_an_unknown_assistant_is_404_and_a_named_one_is_used(api_client, policy, tenant):
    assert api_client.post("/api/v1/conversations", {"assistant": "nope"}, format="json").status_code == 404
    Assistant.objects.create(tenant=tenant, name="Sales", slug="sales", greeting="Hi! Looking for a quote?")
    created = api_client.post("/api/v1/conversations", {"assistant": "sales"}, format="json").json()
    assert created["assistant"] == "sales" and created["greeting"] == "Hi! Looking for a quote?"


def test_a_key_limited_to_one_assistant_sees_only_its_conversations(api_client, conversation_id, tenant, tenant_and_key):
    sales = Assistant.objects.create(tenant=tenant, name="Sales", slug="sales")
    ApiKeyScope.objects.create(api_key=ApiKey.objects.get(tenant=tenant), assistant=sales)
    assert api_client.get(f"/api/v1/conversations/{conversation_id}").status_code == 404  # the default assistant's
    created = api_client.post("/api/v1/conversations", {}, format="json").json()
    assert created["assistant"] == "sales"


def test_a_key_limited_to_one_assistant_cannot_join_another_assistants_v1_conversation(api_client, conversation_id, tenant):
    from tenants.services import api_key_issue

    sales = Assistant.objects.create(tenant=tenant, name="Sales", slug="sales")
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "user": "visitor-7"}
    grouped = api_client.post("/v1/chat/completions", body, format="json")  # the default assistant's, by `user`
    by_id = api_client.post("/v1/chat/completions", body, format="json", headers={"X-Conversation-Id": conversation_id})
    assert grouped.status_code == by_id.status_code == 200
    default_conversation = grouped["X-AgencyHub-Conversation-Id"]
    assert by_id["X-AgencyHub-Conversation-Id"] == conversation_id
    issued = api_key_issue(tenant=tenant)
    ApiKeyScope.objects.create(api_key=issued.api_key, assistant=sales)
    limited = APIClient()
    limited.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw}")
    for headers in ({}, {"X-Conversation-Id": conversation_id}, {"X-Conversation-Id": default_conversation}):
        response = limited.post("/v1/chat/completions", body, format="json", headers=headers)
        assert response.status_code == 200
        joined = response["X-AgencyHub-Conversation-Id"]
        assert joined not in (conversation_id, default_conversation)
        assert Conversation.objects.get(pk=joined).assistant == sales


def test_browser_origins_are_checked_per_assistant(api_client, policy, tenant):
    Assistant.objects.create(tenant=tenant, name="Web", slug="web", allowed_origins=["https://shop.example"])
    ok = api_client.post("/api/v1/conversations", {"assistant": "web"}, format="json", headers={"Origin": "https://shop.example"})
    assert ok.status_code == 201 and ok["Access-Control-Allow-Origin"] == "https://shop.example"
    denied = api_client.post("/api/v1/conversations", {"assistant": "web"}, format="json", headers={"Origin": "https://evil.example"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "origin_not_allowed"


def test_unknown_api_paths_answer_json_404(api_client):
    response = api_client.get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_schema_docs_and_health(client, db):
    schema = client.get("/api/schema")
    assert schema.status_code == 200 and b"/api/v1/conversations/{conversation_id}/messages" in schema.content
    assert client.get("/api/docs").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["checks"] == {"database": "ok", "cache": "ok"}


def test_the_docs_page_works_offline_and_offers_the_bearer_key(client, db, settings):
    import re

    settings.DEBUG = False  # as under gunicorn: the page's own static files must still be served (WhiteNoise)
    document = client.get("/api/schema", HTTP_ACCEPT="application/json").json()
    assert document["components"]["securitySchemes"]["tenantApiKey"] == {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["tenantApiKey"]["description"],
    }
    assert any("tenantApiKey" in requirement for requirement in document["paths"]["/api/v1/usage"]["get"]["security"])
    assert {p["name"] for p in document["paths"]["/api/v1/usage"]["get"]["parameters"]} >= {"from", "to"}
    page = client.get("/api/docs").content.decode()
    assert "cdn" not in page.lower()
    scripts = re.findall(r'src="([^"]+\.js)"', page)
    assert scripts and all(s.startswith("/static/") for s in scripts)
    for src in scripts:
        assert client.get(src).status_code == 200, src


def test_costs_are_written_with_eight_decimals_everywhere(api_client, conversation_id):
    assert api_client.get(f"/api/v1/conversations/{conversation_id}").json()["totals"]["cost"] == "0.00000000"  # not "0"
    reply = post_message(api_client, conversation_id).json()
    usage = api_client.get("/api/v1/usage").json()
    for text in (reply["cost"], usage["days"][0]["cost"], usage["days"][0]["models"][0]["cost"], usage["days"][0]["models"][0]["billed"]):
        assert len(text.split(".")[1]) == 8, text

import io
import json

from django.contrib.auth import get_user_model
from django.core.management import call_command

from providers.models import Credential, LLMModel, ModelPrice
from tenants.models import ApiKey, Tenant


def _seed(**env) -> dict:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return json.loads(out.getvalue())


def test_seed_demo_is_idempotent_and_prints_the_same_login_and_key(db, monkeypatch, client):
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "demo-pass-123")
    monkeypatch.setenv("DEMO_API_KEY", "ahk_demo_key_for_tests_0123456789")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    first = _seed()
    counts = (Tenant.objects.count(), ApiKey.objects.count(), Credential.objects.count(), LLMModel.objects.count(), ModelPrice.objects.count())
    second = _seed()
    assert counts == (Tenant.objects.count(), ApiKey.objects.count(), Credential.objects.count(), LLMModel.objects.count(), ModelPrice.objects.count())
    assert first["admin"]["password"] == second["admin"]["password"] == "demo-pass-123"
    assert first["tenant"]["api_key"] == second["tenant"]["api_key"] == "ahk_demo_key_for_tests_0123456789"
    assert get_user_model().objects.get(username="admin").is_superuser
    assert client.login(username="admin", password="demo-pass-123")
    # The demo answers with no provider keys: the sandbox.
    assert Credential.objects.get().provider.kind == "sandbox"
    response = client.post("/api/v1/conversations", {}, content_type="application/json",
                           HTTP_AUTHORIZATION="Bearer ahk_demo_key_for_tests_0123456789")
    conversation_id = response.json()["id"]
    reply = client.post(f"/api/v1/conversations/{conversation_id}/messages", {"content": "hi"}, content_type="application/json",
                        HTTP_AUTHORIZATION="Bearer ahk_demo_key_for_tests_0123456789")
    assert reply.status_code == 201 and reply.json()["provider"] == "sandbox"
    # Staff revoke the demo key: it is not printed as if it still worked.
    ApiKey.objects.filter(prefix="ahk_demo_key").update(revoked_at="2026-11-25T00:00:00Z")
    assert _seed()["tenant"]["api_key"].startswith("(revoked")


def test_seed_demo_uses_provider_keys_from_the_environment(db, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-9999")
    _seed()
    credential = Credential.objects.get(provider__kind="openai")
    assert credential.get_key() == "sk-from-env-9999" and credential.tenant is None

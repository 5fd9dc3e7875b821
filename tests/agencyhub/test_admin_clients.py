"""Clients: an API key created in the admin is shown once; the list shows its prefix and last use; budget edits
and key issues land in the history; the client page carries its assistants and routing policy."""

import re

import pytest
from django.contrib.admin.models import LogEntry

from tenants.models import ApiKey, hash_api_key
from tests.agencyhub.admin_fixtures import staff_client  # noqa: F401

pytestmark = pytest.mark.django_db


def test_it_shows_a_new_api_key_once(admin_client, tenant):
    response = admin_client.post("/admin/tenants/apikey/add/", {"tenant": tenant.pk, "name": "website"}, follow=True)

    html = response.content.decode()
    raw = re.search(r"ahk_[A-Za-z0-9_\-]+", html).group(0)
    key = ApiKey.objects.get(name="website")
    assert key.key_hash == hash_api_key(raw) and raw.startswith(key.prefix)
    listing = admin_client.get("/admin/tenants/apikey/").content.decode()
    assert raw not in listing and key.prefix in listing
    assert raw not in admin_client.get(f"/admin/tenants/apikey/{key.pk}/change/").content.decode()
    assert raw not in admin_client.get(response.redirect_chain[-1][0]).content.decode()  # once: the next visit has no message


def test_it_lets_staff_issue_a_key_and_records_it(staff_client, tenant):
    response = staff_client.post("/admin/tenants/tenant/", {"action": "issue_api_key", "_selected_action": [tenant.pk]}, follow=True)

    assert re.search(r"New API key for Acme: ahk_", response.content.decode())
    assert LogEntry.objects.filter(object_id=str(tenant.pk), change_message__startswith="Issued API key").exists()


def test_it_records_a_budget_change_in_the_history(staff_client, tenant):
    page = staff_client.get(f"/admin/tenants/tenant/{tenant.pk}/change/").content.decode()
    assert "Budgets and billing" in page and "routing policy" in page.lower() and "Instructions" in page

    data = {
        "name": "Acme", "slug": "acme", "is_active": "on", "timezone": "UTC", "daily_token_budget": "50000",
        "markup_percent": "10", "byok_fee_percent": "0", "webhook_secret": tenant.webhook_secret,
    }
    for prefix in ("api_keys", "routing_policy", "assistants"):
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0", f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"})
    response = staff_client.post(f"/admin/tenants/tenant/{tenant.pk}/change/", data)

    assert response.status_code == 302, response.content.decode()[:3000]
    tenant.refresh_from_db()
    assert tenant.daily_token_budget == 50000
    entry = LogEntry.objects.get(object_id=str(tenant.pk))
    assert "Daily token budget" in entry.get_change_message()


def test_an_assistant_form_refuses_bad_origins_and_another_clients_policy(admin_client, tenant):
    from conversations.models import Assistant
    from routing.models import RoutingPolicy, RoutingTarget
    from tenants.services import tenant_create

    other, _ = tenant_create(slug="other", name="Other")
    economy = RoutingTarget.objects.create(name="Economy tier", tier="economy")
    theirs = RoutingPolicy.objects.create(name="Other's policy", tenant=other, default_target=economy)
    form = {"tenant": tenant.pk, "name": "Shop", "slug": "shop", "is_active": "on", "default_max_tokens": "1024",
            "allowed_origins": '"https://shop.example"', "routing_policy": theirs.pk}
    page = admin_client.post("/admin/conversations/assistant/add/", form).content.decode()
    assert "must be a list of origins" in page and "belongs to another client" in page
    saved = admin_client.post("/admin/conversations/assistant/add/", {**form, "allowed_origins": "null", "routing_policy": ""})
    assert saved.status_code == 302  # an emptied field is no origins, not a 500
    assert Assistant.objects.get(slug="shop").allowed_origins == []

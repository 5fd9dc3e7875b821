"""Roles: agency staff run clients, providers, routing and conversations but never see invoices; finance reads
everything and changes nothing outside billing."""

import pytest

from providers.models import Credential
from tests.agencyhub.admin_fixtures import finance_client, openai, staff_client  # noqa: F401

pytestmark = pytest.mark.django_db

STAFF_PAGES = [
    "/admin/tenants/tenant/", "/admin/tenants/apikey/", "/admin/providers/provider/", "/admin/providers/credential/",
    "/admin/providers/llmmodel/", "/admin/providers/attemptlog/", "/admin/routing/routingpolicy/",
    "/admin/routing/routingtarget/", "/admin/conversations/conversation/", "/admin/conversations/message/",
    "/admin/conversations/feedback/", "/admin/conversations/assistant/", "/admin/billing/usagerecord/",
]


@pytest.mark.parametrize("url", STAFF_PAGES)
def test_it_opens_the_operating_pages_to_agency_staff(staff_client, url):
    assert staff_client.get(url).status_code == 200


@pytest.mark.parametrize("url", [
    "/billing/invoices/", "/billing/invoices/1.pdf", "/billing/invoices/1.csv",
    "/admin/billing/invoice/", "/admin/billing/invoice/1/change/", "/admin/billing/invoice/1/pdf/", "/admin/billing/invoice/1/csv/",
])
def test_it_refuses_invoices_to_agency_staff(staff_client, url):
    assert staff_client.get(url).status_code == 403


def test_it_leaves_invoices_out_of_agency_staffs_index(staff_client):
    html = staff_client.get("/admin/").content.decode()
    assert "/admin/billing/invoice/" not in html
    assert "/admin/tenants/tenant/" in html


@pytest.mark.parametrize("url", [*STAFF_PAGES, "/admin/billing/invoice/", "/billing/invoices/"])
def test_it_lets_finance_read_everything(finance_client, url):
    assert finance_client.get(url).status_code == 200


def test_it_refuses_finance_a_change_to_a_credential(finance_client, openai):
    credential = Credential(provider=openai, label="agency")
    credential.set_key("sk-finance-must-not-touch-1111")
    credential.save()
    url = f"/admin/providers/credential/{credential.pk}/change/"

    page = finance_client.get(url)
    response = finance_client.post(url, {"provider": openai.pk, "label": "hijacked", "api_key": "sk-other", "is_enabled": "on"})

    assert page.status_code == 200 and 'name="api_key"' not in page.content.decode()  # view only
    assert response.status_code == 403
    credential.refresh_from_db()
    assert credential.label == "agency" and credential.get_key() == "sk-finance-must-not-touch-1111"


def test_it_refuses_finance_a_change_to_a_budget(finance_client, tenant):
    response = finance_client.post(f"/admin/tenants/tenant/{tenant.pk}/change/", {"name": "Acme", "slug": "acme", "daily_token_budget": "1"})
    assert response.status_code == 403
    tenant.refresh_from_db()
    assert tenant.daily_token_budget is None


def test_finance_cannot_run_a_failover_drill(finance_client, db):
    from routing.models import RoutingPolicy, RoutingTarget
    from providers.catalog import catalog_load
    from providers.models import LLMModel

    catalog_load()
    target = RoutingTarget.objects.create(name="Economy", model=LLMModel.objects.filter(is_enabled=True).first())
    policy = RoutingPolicy.objects.create(name="Agency", is_agency_default=True, default_target=target)
    page = finance_client.get("/admin/routing/routingpolicy/")
    assert page.status_code == 200 and "run_failover_drill" not in page.content.decode()
    refused = finance_client.post("/admin/routing/routingpolicy/", {"action": "run_failover_drill", "_selected_action": [policy.pk]})
    assert refused.status_code in (200, 302, 403)
    from providers.models import AttemptLog

    assert not AttemptLog.objects.exists()  # no call was made

"""The control panel in a real browser: Debian's headless Chromium driven by Playwright against a live server.

Log in, create a client and see its API key once, add its own (BYOK) provider key, give it a routing rule, look at
the dashboard, download an issued invoice's PDF. With SAVE_SCREENSHOTS=1 it also writes docs/screenshots/
dashboard.png and conversation.png (shown in the README).

Needs /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it). Playwright launches that binary: no
browser download.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import connections
from django.db.models import F
from django.utils import timezone

from billing.invoicing import invoice_generate, invoice_issue
from billing.services import usage_record_append, usage_record_build
from conversations.models import Assistant, Conversation, Feedback, Message
from providers.breaker import breaker
from providers.catalog import catalog_load
from providers.models import AttemptLog, Credential, LLMModel
from providers.services import credential_set
from providers.types import ChatResult, FinishReason, Usage
from routing.models import RoutingPolicy, RoutingRule
from routing.services import starter_policy_ensure
from tenants.models import ApiKey, Tenant

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "control-panel-test-pw"


def chromium_path() -> str:
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if not path:
        pytest.fail(f"Chromium is needed for the browser test and was not found at {CHROMIUM}: apt-get install -y chromium "
                    "(.ci/run installs it), or set CHROMIUM_PATH.")
    return path


def llm(kind: str, model_id: str) -> LLMModel:
    return LLMModel.objects.select_related("provider").get(provider__kind=kind, model_id=model_id)


def call(tenant, model, credential, at, tokens_in, tokens_out, conversation=None):
    usage = Usage(input_tokens=tokens_in, output_tokens=tokens_out)
    result = ChatResult(text="", finish_reason=FinishReason.STOP, usage=usage, model=model.model_id, latency_ms=900)
    return usage_record_append(usage_record_build(tenant=tenant, model=model, credential=credential, result=result, conversation_id=conversation, at=at))


def seed(now):
    """A month of plausible traffic for three clients, an issued invoice for last month, a conversation."""
    catalog_load(at=now - timedelta(days=400))
    starter_policy_ensure()
    User.objects.create_superuser("admin", "admin@agency.test", PASSWORD)
    agency = {kind: credential_set(kind=kind, key=f"sk-agency-{kind}-0000", label="agency") for kind in ("anthropic", "openai", "openrouter")}
    stale = credential_set(kind="openrouter", key="sk-or-old-7731", label="2025 key")
    Credential.objects.filter(pk=stale.pk).update(
        is_enabled=False, needs_attention=True, disabled_at=now - timedelta(hours=5),
        disabled_reason="The provider rejected this key (HTTP 401): invalid API key",
    )
    northwind = Tenant.objects.create(name="Northwind Traders", slug="northwind", daily_token_budget=2_000_000,
                                      monthly_spend_cap=Decimal("400"), markup_percent=Decimal("25"))
    bluebottle = Tenant.objects.create(name="Blue Bottle Media", slug="bluebottle", timezone="America/New_York",
                                       daily_token_budget=400_000, monthly_spend_cap=Decimal("60"), markup_percent=Decimal("30"))
    lumen = Tenant.objects.create(name="Lumen Health", slug="lumen", timezone="Europe/Berlin", byok_fee_percent=Decimal("8"))
    lumen_own = credential_set(kind="anthropic", key="sk-ant-lumen-own-5150", label="lumen own", tenant=lumen)

    haiku, mini = llm("anthropic", "claude-haiku-4-5"), llm("openai", "gpt-4o-mini")
    sonnet, opus = llm("anthropic", "claude-sonnet-4-5"), llm("anthropic", "claude-opus-4-8")
    rng = random.Random(7)
    plan = [(northwind, agency["anthropic"], 60), (bluebottle, agency["openai"], 40), (lumen, lumen_own, 30)]
    days_this_month = now.day - 1
    for tenant, credential, calls in plan:
        for i in range(calls):
            model = (haiku if credential.provider.kind == "anthropic" else mini) if i % 5 else (opus if i % 10 == 0 else sonnet)
            if model.provider.kind != credential.provider.kind:
                credential_for = agency[model.provider.kind]
            else:
                credential_for = credential
            at = now - timedelta(minutes=rng.randint(2, 600)) if i % 3 == 0 or not days_this_month else \
                now - timedelta(days=rng.randint(1, days_this_month), minutes=rng.randint(0, 600))
            call(tenant, model, credential_for, at, rng.randint(8_000, 90_000), rng.randint(1_500, 16_000), uuid.uuid4())
    last_month = now.replace(day=1) - timedelta(days=6)
    for _ in range(12):
        call(northwind, haiku, agency["anthropic"], last_month, 120_000, 30_000)
    invoice = invoice_issue(invoice=invoice_generate(tenant=northwind, month=last_month.date().replace(day=1)))

    latency = {haiku: 700, mini: 900, sonnet: 1800, opus: 4200, llm("openrouter", "anthropic/claude-haiku-4.5"): 1300}
    attempts = []
    for model, base in latency.items():
        credential = agency[model.provider.kind]
        for _ in range(60):
            failed = rng.random() < (0.25 if model.provider.kind == "openrouter" else 0.03)
            attempts.append(AttemptLog(
                provider_kind=model.provider.kind, model=model, credential=credential, outcome="overloaded" if failed else "ok",
                error_kind="overloaded" if failed else "", latency_ms=int(base * rng.uniform(0.6, 2.2)),
                created_at=now - timedelta(minutes=rng.randint(1, 1400)),
            ))
    AttemptLog.objects.bulk_create(attempts)
    breaker().force_open(agency["openrouter"].pk, llm("openrouter", "anthropic/claude-haiku-4.5").pk, 300)

    assistant = Assistant.objects.create(tenant=northwind, name="Support assistant", slug="support",
                                         instructions="You answer Northwind's customers about orders and deliveries.")
    conversation = Conversation.objects.create(tenant=northwind, assistant=assistant, external_user_id="customer-4411",
                                               metadata={"channel": "web"})
    turns = [
        ("Hi! My order NW-20931 hasn't arrived yet. It was due on Monday.", None),
        ("Sorry about the wait. Order NW-20931 left our warehouse on Friday and is with the carrier; the tracking shows "
         "a delay at the regional hub. It should arrive within two working days.", haiku),
        ("That's too late, it's a gift. I want to talk to a human.", None),
        ("I understand, it matters. I've flagged your order for a priority re-dispatch and asked a colleague from customer "
         "care to contact you today by e-mail. You'll also get a new tracking link as soon as it's on its way.", opus),
    ]
    previous = None
    for content, model in turns:
        if model is None:
            previous = Message.objects.create(tenant=northwind, conversation=conversation, role="user", content=content,
                                              escalate="human" in content)
            continue
        record = call(northwind, model, agency["anthropic"], now - timedelta(minutes=3), 420, 68, conversation.id)
        reply = Message.objects.create(
            tenant=northwind, conversation=conversation, role="assistant", content=content, reply_to=previous, model=model,
            provider_kind=model.provider.kind, model_name=model.model_id, finish_reason="stop", input_tokens=420,
            output_tokens=68, cost=record.cost, latency_ms=latency[model], mode="sync",
            route_reason="escalation requested -> Premium chain" if model == opus else "default target -> Economy chain",
        )
        Conversation.objects.filter(pk=conversation.pk).update(
            input_tokens=F("input_tokens") + 420, output_tokens=F("output_tokens") + 68, cost=F("cost") + record.cost,
        )
        Feedback.objects.create(message=reply, rating=1 if model == opus else -1)
    for i in range(30):  # more feedback for the dashboard's thumbs-up rates
        model = [haiku, mini, sonnet, opus][i % 4]
        other = Conversation.objects.create(tenant=northwind, assistant=assistant)
        reply = Message.objects.create(tenant=northwind, conversation=other, role="assistant", content="ok", model=model)
        Feedback.objects.create(message=reply, rating=1 if rng.random() < {haiku: 0.7, mini: 0.65, sonnet: 0.8, opus: 0.9}[model] else -1)
    return {"invoice": invoice, "conversation": conversation}


def choose(page, field_id: str, text: str) -> None:
    """Pick `text` in a select, whether a plain <select> or the admin's autocomplete (select2) widget."""
    select = page.locator(f"#{field_id}")
    if "admin-autocomplete" in (select.get_attribute("class") or ""):
        page.locator(f"#{field_id} + .select2").click()
        page.locator(".select2-container--open .select2-search__field").fill(text)
        page.locator(".select2-results__option", has_text=text).first.click()
    else:
        select.select_option(label=text)


def success_message(page) -> str:
    return page.locator(".messagelist").inner_text()


def test_control_panel_in_a_browser(live_server, monkeypatch):
    executable = chromium_path()
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:  # pragma: no cover - requirements.txt pins it
        pytest.fail("playwright is not installed: pip install -r requirements.txt")
    # Playwright's sync API runs an event loop in this thread; the few ORM reads below are plain sync code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    save = os.environ.get("SAVE_SCREENSHOTS") == "1"
    seeded = seed(timezone.now())
    base = live_server.url

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True, device_scale_factor=1)
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            # log in
            page.goto(f"{base}/admin/login/?next=/admin/")
            page.fill("#id_username", "admin")
            page.fill("#id_password", PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page.locator("#agencyhub-dashboard")).to_be_visible()

            # a client, then its API key: shown once
            page.goto(f"{base}/admin/tenants/tenant/add/")
            page.fill("#id_name", "Initech")
            if not page.input_value("#id_slug"):
                page.fill("#id_slug", "initech")
            page.fill("#id_daily_token_budget", "1000000")
            page.locator("input[name=_save]").click()
            expect(page.locator(".messagelist")).to_contain_text("was added successfully")
            tenant = Tenant.objects.get(name="Initech")
            key_pattern = re.compile(r"ahk_[A-Za-z0-9_\-]{20,}")
            shown = key_pattern.search(success_message(page))
            if shown is None:  # no key issued with the client: add one on the API key page
                page.goto(f"{base}/admin/tenants/apikey/add/?tenant={tenant.pk}")
                page.fill("#id_name", "production")
                page.locator("input[name=_save]").click()
                expect(page.locator(".messagelist")).to_contain_text("copy it now")
                shown = key_pattern.search(success_message(page))
            assert shown, success_message(page)
            raw_key = shown.group(0)
            api_key = ApiKey.objects.get(tenant=tenant, revoked_at__isnull=True)
            assert raw_key.startswith(api_key.prefix)
            page.goto(f"{base}/admin/tenants/apikey/{api_key.pk}/change/")
            assert raw_key not in page.content()  # never shown again
            page.goto(f"{base}/admin/tenants/tenant/{tenant.pk}/change/")
            assert raw_key not in page.content()

            # the client's own provider key (BYOK), write-only
            page.goto(f"{base}/admin/providers/credential/add/?tenant={tenant.pk}")
            choose(page, "id_provider", "Anthropic")
            page.fill("#id_label", "initech own")
            page.fill("#id_api_key", "sk-ant-initech-own-9876")
            page.locator("input[name=_save]").click()
            expect(page.locator(".messagelist")).to_contain_text("was added successfully")
            assert "sk-ant-initech-own-9876" not in page.content()
            byok = Credential.objects.get(tenant=tenant, label="initech own")
            assert byok.is_byok and byok.get_key() == "sk-ant-initech-own-9876"

            # a routing policy for the client with a rule: escalations go to the premium chain
            page.goto(f"{base}/admin/routing/routingpolicy/add/?tenant={tenant.pk}")
            page.fill("#id_name", "Initech routing")
            choose(page, "id_default_target", "Economy chain")
            page.locator("#rules-group .add-row a").click()
            page.fill("#id_rules-0-name", "Escalate to premium")
            page.check("#id_rules-0-on_escalation")
            choose(page, "id_rules-0-target", "Premium chain")
            page.locator("input[name=_save]").click()
            expect(page.locator(".messagelist")).to_contain_text("was added successfully")
            policy = RoutingPolicy.objects.get(tenant=tenant)
            [rule] = RoutingRule.objects.filter(policy=policy)
            assert (rule.name, rule.on_escalation, rule.target.name) == ("Escalate to premium", True, "Premium chain")

            # the dashboard: figures and charts
            page.goto(f"{base}/admin/")
            expect(page.locator("html")).to_have_attribute("data-dashboard-charts", "drawn")
            dashboard = page.locator("#agencyhub-dashboard")
            for text in ("Needs attention", "Circuit breakers open now (1)", "2025 key", "Billed this month",
                         "Saved by routing this month", "Northwind Traders", "Initech", "claude-haiku-4-5"):
                expect(dashboard).to_contain_text(text)
            for canvas in ("chart-spend", "chart-budget", "chart-savings", "chart-latency"):
                box = page.locator(f"#{canvas}").bounding_box()
                assert box and box["width"] > 100 and box["height"] > 100, canvas
            assert page.evaluate("Chart.getChart(document.getElementById('chart-latency')).data.labels.length") >= 4
            expect(page.locator("#content-main .app-tenants")).to_be_visible()  # the app list is still there
            if save:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                bottom = page.evaluate("document.getElementById('agencyhub-dashboard').getBoundingClientRect().bottom + window.scrollY")
                page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True,
                                clip={"x": 0, "y": 0, "width": 1440, "height": bottom + 16})

            # the invoice PDF, from the invoice's admin page
            invoice = seeded["invoice"]
            page.goto(f"{base}/admin/billing/invoice/{invoice.pk}/change/")
            with page.expect_download() as download_info:
                page.get_by_role("link", name="PDF", exact=True).click()
            download = download_info.value
            assert download.suggested_filename == f"{invoice.filename}.pdf"
            with open(download.path(), "rb") as pdf:
                assert pdf.read(5) == b"%PDF-"

            # a conversation's transcript (the Conversation admin belongs to the conversations app)
            if admin.site.is_registered(Conversation):
                conversation = seeded["conversation"]
                page.goto(f"{base}/admin/conversations/conversation/{conversation.pk}/change/")
                expect(page.locator("#content")).to_contain_text("priority re-dispatch")
                if save:
                    page.locator("#content").screenshot(path=str(SCREENSHOTS / "conversation.png"))
        finally:
            # Code in this block runs in Playwright's greenlet, which has its own context: its database connection
            # is not the test's. Close it, or it would outlive the test and block dropping the test database.
            connections.close_all()
            context.close()
            browser.close()

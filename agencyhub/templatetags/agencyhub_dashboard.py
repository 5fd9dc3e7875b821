"""`{% agencyhub_dashboard as dash %}` for the admin index (templates/admin/index.html), and the filters it uses."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django import template

from agencyhub.dashboard import dashboard

register = template.Library()


@register.simple_tag(takes_context=True)
def agencyhub_dashboard(context) -> dict | None:
    request = context.get("request")
    if request is None or not getattr(request.user, "is_staff", False):
        return None
    return dashboard(request.user)


@register.filter
def usd(value, places: int = 2) -> str:
    """$1,234.57 (half-up to `places` decimals); an em dash for None."""
    if value is None or value == "":
        return "—"
    amount = Decimal(value).quantize(Decimal(1).scaleb(-int(places)), rounding=ROUND_HALF_UP)
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,}"


@register.filter
def percent(ratio, places: int = 1) -> str:
    """0.1234 -> '12.3 %'; an em dash for None (no data, or no budget / cap)."""
    if ratio is None or ratio == "":
        return "—"
    return f"{float(ratio) * 100:.{int(places)}f} %"


@register.filter
def ms(value) -> str:
    if value is None:
        return "—"
    return f"{float(value):,.0f} ms"

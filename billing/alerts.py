"""Budget alerts at 80 % and 100 % of the daily budget: once per tenant, day and threshold."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail

from billing.models import BudgetAlert
from providers.state import shared_state
from tenants.models import Tenant

log = logging.getLogger(__name__)
THRESHOLDS = (80, 100)


def budget_alerts_check(*, tenant: Tenant, day: str, used_tokens: int) -> list[int]:
    """Raise the alerts that `used_tokens` crosses and that were not raised today. Returns the new ones."""
    if not tenant.daily_token_budget:
        return []
    percent = 100 * used_tokens / tenant.daily_token_budget
    raised = []
    for threshold in THRESHOLDS:
        # SET NX: of all the processes that see the crossing, exactly one raises the alert.
        if percent >= threshold and shared_state().set(f"budget:alert:{tenant.pk}:{day}:{threshold}", "1", ttl=3 * 24 * 3600, nx=True):
            _raise(tenant, day, threshold, used_tokens)
            raised.append(threshold)
    return raised


def _raise(tenant: Tenant, day: str, threshold: int, used_tokens: int) -> None:
    alert, created = BudgetAlert.objects.get_or_create(
        tenant=tenant, day=day, threshold=threshold, defaults={"used_tokens": used_tokens, "budget_tokens": tenant.daily_token_budget},
    )
    if not created:
        return
    recipients = [tenant.account_manager_email] if tenant.account_manager_email else [email for _, email in settings.ADMINS]
    if not recipients:
        log.warning("budget alert for %s (%s %%) has no recipient: set the tenant's account manager email", tenant.slug, threshold)
        return
    send_mail(
        subject=f"[AgencyHub] {tenant.name} used {threshold}% of today's token budget",
        message=(
            f"{tenant.name} ({tenant.slug}) has used {used_tokens:,} of its {tenant.daily_token_budget:,} daily tokens "
            f"({threshold}% threshold) on {day} ({tenant.timezone}).\n"
            + ("New requests are refused until the budget resets at midnight." if threshold >= 100 else "")
        ),
        from_email=None, recipient_list=recipients, fail_silently=True,
    )

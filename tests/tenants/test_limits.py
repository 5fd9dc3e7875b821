"""A client's limits: empty means none; a value must be one that can be met (0 used to mean "unlimited" for budgets
and rate limits, and a negative spend cap refused every call)."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from tenants.models import ApiKey
from tenants.services import tenant_create

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("field, value", [("daily_token_budget", 0), ("rate_limit_per_minute", 0),
                                          ("monthly_spend_cap", Decimal("0")), ("monthly_spend_cap", Decimal("-10"))])
def test_a_limit_that_cannot_be_met_is_refused(field, value):
    tenant, _ = tenant_create(slug="acme", name="Acme")
    setattr(tenant, field, value)
    with pytest.raises(ValidationError) as refused:
        tenant.full_clean()
    assert field in refused.value.message_dict
    setattr(tenant, field, None)  # empty: no limit
    tenant.full_clean()


def test_a_key_rate_limit_of_zero_is_refused_and_the_command_says_so():
    tenant, issued = tenant_create(slug="acme", name="Acme")
    key = ApiKey.objects.get(pk=issued.api_key.pk)
    key.rate_limit_per_minute = 0
    with pytest.raises(ValidationError):
        key.full_clean()
    with pytest.raises(CommandError, match="daily_token_budget"):
        call_command("create_tenant", "globex", "--name", "Globex", "--daily-token-budget", "0")


def test_the_migration_turns_stored_zeros_into_no_limit():
    import importlib

    from django.apps import apps

    from tenants.models import Tenant

    tenant, _ = tenant_create(slug="acme", name="Acme")
    Tenant.objects.filter(pk=tenant.pk).update(daily_token_budget=0, rate_limit_per_minute=0, monthly_spend_cap=Decimal("-1"))
    migration = importlib.import_module("tenants.migrations.0003_limits_are_positive")
    migration.zero_means_unlimited(apps, None)
    tenant.refresh_from_db()
    assert (tenant.daily_token_budget, tenant.rate_limit_per_minute, tenant.monthly_spend_cap) == (None, None, None)

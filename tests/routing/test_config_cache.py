"""The planner's per-process configuration cache: served while nothing changed, dropped on any change, from
this process or another one (the version token lives in Redis, in Django's cache)."""

import uuid

from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from providers.health import credential_record_failure
from providers.errors import ErrorKind, ProviderError
from providers.models import Credential
from routing.planner import RoutingContext, plan_route
from tenants.config_cache import VERSION_KEY
from tests.routing.conftest import add_rule


def labels(tenant) -> list[str]:
    return [c.label for c in plan_route(RoutingContext(tenant=tenant, text="hello")).candidates]


def queries_of(fn) -> int:
    with CaptureQueriesContext(connection) as captured:
        fn()
    return len(captured.captured_queries)


def test_an_unchanged_configuration_is_planned_without_queries(tenant, routed_policy):
    first = queries_of(lambda: plan_route(RoutingContext(tenant=tenant, text="hello")))
    again = queries_of(lambda: plan_route(RoutingContext(tenant=tenant, text="hello")))
    assert first > 0 and again == 0


def test_a_saved_change_is_planned_at_once(tenant, routed_policy, targets):
    before = labels(tenant)
    add_rule(routed_policy, targets["premium"], name="always premium")  # saved: the token changes
    assert labels(tenant) != before and labels(tenant)[0] == "anthropic:claude-opus-4-8 (agency)"


def test_a_credential_disabled_by_a_401_leaves_the_plan_at_once(tenant, routed_policy):
    before = labels(tenant)
    anthropic = Credential.objects.get(provider__kind="anthropic", tenant__isnull=True)
    credential_record_failure(credential=anthropic, error=ProviderError(ErrorKind.AUTHENTICATION, "bad key", status=401))
    after = labels(tenant)
    assert any("anthropic:" in label for label in before)
    assert not any(label.startswith("anthropic:") for label in after)


def test_a_change_published_by_another_process_drops_the_cached_entries(tenant, routed_policy):
    labels(tenant)
    # Another process changed a credential with a queryset update and published it: only the token moves here.
    Credential.objects.filter(provider__kind="openai").update(is_enabled=False)
    assert any("gpt-4o-mini" in label for label in labels(tenant))  # still cached: nothing was published
    cache.set(VERSION_KEY, uuid.uuid4().hex)
    assert not any("gpt-4o-mini" in label for label in labels(tenant))


def test_a_change_is_published_to_other_processes_when_it_commits(tenant, routed_policy, django_capture_on_commit_callbacks):
    labels(tenant)
    before = cache.get(VERSION_KEY)
    with django_capture_on_commit_callbacks(execute=True):
        routed_policy.name = "renamed"
        routed_policy.save()
        assert cache.get(VERSION_KEY) == before  # no Redis call inside the transaction
    assert cache.get(VERSION_KEY) not in (before, None)

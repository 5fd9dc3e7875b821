"""Failover drills: skip each chain's primary on purpose and check that the backup answers."""

from __future__ import annotations

import time

from providers.health import attempt_logs_write
from providers.types import ChatMessage, ChatRequest, FinishReason
from routing.executor import AllCandidatesFailed, execute
from routing.models import RoutingPolicy, RoutingTarget
from routing.planner import (Candidate, Plan, RoutingContext, agency_fallback_allowed, can_take, credentials_by_provider,
                             order_candidates, target_models)
from tenants.models import Tenant

DRILL_PROMPT = "This is a failover drill. Reply with the single word: ok."


def _policy_targets(policy: RoutingPolicy) -> list[RoutingTarget]:
    targets = [policy.default_target] + [rule.target for rule in policy.rules.filter(is_enabled=True).select_related("target")]
    seen: set[int] = set()
    return [t for t in targets if not (t.pk in seen or seen.add(t.pk))]


def _drill_request(candidate: Candidate) -> ChatRequest:
    return ChatRequest(model=candidate.model.model_id, messages=[ChatMessage("user", DRILL_PROMPT)], max_tokens=8,
                       supports_temperature=candidate.model.supports_temperature)


def drill_target(target: RoutingTarget, *, tenant: Tenant | None, allow_agency: bool = True) -> dict:
    creds = credentials_by_provider(tenant, allow_agency)
    # Only what real traffic could use (the planner's own test): a disabled or unpriced model is not a backup.
    ctx = RoutingContext(tenant=tenant, text=DRILL_PROMPT, max_output_tokens=8)
    models = [m for m in target_models(target) if can_take(m, ctx) is None]
    # In the order real traffic tries them (strategy, the client's own keys first, no sandbox beside real providers):
    # the primary skipped is the one real traffic would call first.
    candidates = order_candidates(models, creds, target.strategy)
    report: dict = {"target": target.name, "primary": candidates[0].label if candidates else None}
    if len(candidates) < 2:
        return {**report, "status": "failed", "error": "no backup: the chain has fewer than two usable candidates"}
    # The primary is skipped on purpose: the drill proves the rest of the chain answers without it.
    plan = Plan(candidates=candidates[1:], reason=f"failover drill of {target.name}")
    started = time.perf_counter()
    try:
        execution = execute(plan, _drill_request, tenant_id=tenant.pk if tenant else None, probe=True)
    except AllCandidatesFailed as failure:
        return {**report, "status": "failed", "error": str(failure), "attempts": [a.as_dict() for a in failure.attempts]}
    attempt_logs_write([execution.success_log])
    result = execution.result
    if result.finish_reason == FinishReason.CONTENT_FILTER or not (result.text.strip() or result.tool_calls):
        return {**report, "status": "failed", "answered_by": execution.candidate.label,
                "error": "the backup answered without an answer: " + ("it refused" if result.text.strip() else "empty text"),
                "attempts": [a.as_dict() for a in execution.attempts]}
    return {
        **report,
        "status": "ok",
        "answered_by": execution.candidate.label,
        "latency_ms": int((time.perf_counter() - started) * 1000),
        "attempts": [a.as_dict() for a in execution.attempts],
    }


def _drill_policy(policy: RoutingPolicy, tenant: Tenant | None) -> list[dict]:
    allow_agency = agency_fallback_allowed(tenant, policy)
    via = {"tenant": tenant.slug} if tenant is not None and policy.tenant_id is None else {}
    return [{"policy": policy.name, **via, **drill_target(t, tenant=tenant, allow_agency=allow_agency)}
            for t in _policy_targets(policy)]


def failover_drill(*, tenant: Tenant | None = None, policy: RoutingPolicy | None = None) -> list[dict]:
    """One report per chain of `policy`, else of the tenant's policy (or of the agency default policy).

    Assistants' overrides are drilled as their clients' traffic sees them (their keys, their "own keys only"): with
    `tenant`, the override policies of its active assistants too; with an agency-wide `policy`, once more for each
    client whose active assistants use it as their override."""
    explicit = policy is not None
    if policy is None and tenant is not None:
        policy = RoutingPolicy.objects.filter(tenant=tenant).first()
    if policy is None:
        policy = RoutingPolicy.objects.filter(is_agency_default=True).first()
    reports = _drill_policy(policy, tenant) if policy is not None else []
    if explicit and tenant is None and policy.tenant_id is None:
        for client in Tenant.objects.filter(assistants__routing_policy=policy, assistants__is_active=True).distinct():
            reports += _drill_policy(policy, client)
    elif tenant is not None and not explicit:
        overrides = RoutingPolicy.objects.filter(assistants__tenant=tenant, assistants__is_active=True).distinct()
        for override in overrides.exclude(pk=policy.pk if policy is not None else None):
            reports += _drill_policy(override, tenant)
    return reports

"""Requests per minute, per tenant and per API key, counted in the shared state (fixed one-minute windows)."""

import math
import time

from rest_framework.throttling import BaseThrottle

from providers.state import shared_state


class TenantRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        principal = request.user
        tenant = getattr(principal, "tenant", None)
        if tenant is None:
            return True
        now = time.time()
        window = int(now // 60)
        self._wait = math.ceil(60 - now % 60)
        for scope, owner_id, limit in (
            ("tenant", tenant.pk, tenant.rate_limit_per_minute),
            ("key", principal.api_key.pk, principal.api_key.rate_limit_per_minute),
        ):
            if limit and shared_state().incr(f"ratelimit:{scope}:{owner_id}:{window}", 1, ttl=120) > limit:
                self.scope = scope
                return False
        return True

    def wait(self) -> float:
        return self._wait

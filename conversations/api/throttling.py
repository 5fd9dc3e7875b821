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
        counted: list[str] = []
        # The key's own limit first: a request it refuses must not use up the tenant's allowance for its other keys.
        for scope, owner_id, limit in (
            ("key", principal.api_key.pk, principal.api_key.rate_limit_per_minute),
            ("tenant", tenant.pk, tenant.rate_limit_per_minute),
        ):
            if not limit:
                continue
            key = f"ratelimit:{scope}:{owner_id}:{window}"
            if shared_state().incr(key, 1, ttl=120) > limit:
                for taken in counted:  # refused: give back what this request took from the narrower counter
                    shared_state().incr(taken, -1, ttl=120)
                self.scope = scope
                return False
            counted.append(key)
        return True

    def wait(self) -> float:
        return self._wait

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from tenants.config_cache import memo
from tenants.models import ApiKey, Tenant, hash_api_key

# last_used_at is a hint for staff, not an audit trail: write it at most this often per key.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_last_used_written: dict[int, datetime] = {}  # key id -> when this process last wrote its last_used_at


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    raw: str  # shown once, never stored


def api_key_issue(*, tenant: Tenant | None = None, name: str = "", key: ApiKey | None = None) -> IssuedKey:
    """Create a key for `tenant` — or give `key` (unsaved, e.g. from the admin's form, with its tenant and
    settings) its secret and save it. Only the hash and a prefix are stored; the raw secret is returned once."""
    raw, prefix, key_hash = ApiKey.generate()
    key = key if key is not None else ApiKey(tenant=tenant, name=name)
    key.prefix, key.key_hash = prefix, key_hash
    key.save()
    return IssuedKey(api_key=key, raw=raw)


def api_key_revoke(*, api_key: ApiKey) -> None:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])


def api_key_resolve(raw: str) -> ApiKey | None:
    """The active key (and its tenant) for a raw secret, or None. One query, none inside a configuration scope
    (cached per process until a key or tenant changes: tenants.config_cache); last use is throttled."""
    key_hash = hash_api_key(raw)
    key = memo(
        ("api-key", key_hash), lambda: ApiKey.objects.active().select_related("tenant").filter(key_hash=key_hash).first(),
        cache_none=False,
    )
    if key is None:
        return None
    now = timezone.now()
    last = _last_used_written.get(key.pk) or key.last_used_at  # the cached key itself is read-only
    if last is None or now - last > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        _last_used_written[key.pk] = now
    return key


@transaction.atomic
def tenant_create(*, slug: str, name: str, daily_token_budget: int | None = None, timezone_name: str = "UTC") -> tuple[Tenant, IssuedKey]:
    tenant = Tenant(slug=slug, name=name, daily_token_budget=daily_token_budget, timezone=timezone_name)
    tenant.full_clean()
    tenant.save()
    return tenant, api_key_issue(tenant=tenant, name="default")

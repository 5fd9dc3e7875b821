from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from providers import crypto
from providers.models import DEFAULT_BASE_URLS, Credential, Provider, ProviderKind
from tenants.models import Tenant


def provider_configure(*, kind: str, base_url: str | None = None, is_enabled: bool | None = None) -> Provider:
    if kind not in ProviderKind.values:
        raise ValueError(f"unknown provider kind {kind!r}; choose one of {', '.join(ProviderKind.values)}")
    provider, _ = Provider.objects.get_or_create(kind=kind, defaults={"base_url": DEFAULT_BASE_URLS[ProviderKind(kind)]})
    fields = []
    if base_url is not None:
        provider.base_url = base_url.rstrip("/")
        fields.append("base_url")
    if is_enabled is not None:
        provider.is_enabled = is_enabled
        fields.append("is_enabled")
    if fields:
        provider.full_clean()
        provider.save(update_fields=fields)
    return provider


@transaction.atomic
def credential_set(*, kind: str, key: str, label: str = "default", tenant: Tenant | None = None) -> Credential:
    """Create or replace a credential's key (re-enabling it and clearing its last error)."""
    provider = provider_configure(kind=kind)
    credential = Credential.objects.select_for_update().filter(provider=provider, tenant=tenant, label=label).first()
    if credential is None:
        credential = Credential(provider=provider, tenant=tenant, label=label)
    credential.set_key(key)
    credential.is_enabled = True
    credential.last_error = ""
    credential.last_error_at = None
    credential.needs_attention = False
    credential.disabled_reason = ""
    credential.disabled_at = None
    credential.save()
    return credential


def credential_mark_used(*, credential: Credential) -> None:
    Credential.objects.filter(pk=credential.pk).update(last_used_at=timezone.now())


def credential_rotate_all(*, batch_size: int = 500, progress=None) -> tuple[int, list[Credential]]:
    """Re-encrypt every credential with the newest FIELD_ENCRYPTION_KEYS entry. Safe to re-run.

    Returns (how many were rotated, the credentials none of the keys can decrypt). One unreadable key (encrypted
    with a key no longer listed) does not stop the others: each is rotated or reported. `progress(done)` is called
    after each batch."""
    rotated, unreadable = 0, []
    last_pk = 0
    while True:
        with transaction.atomic():
            batch = list(
                Credential.objects.select_for_update(of=("self",)).select_related("provider", "tenant")
                .filter(pk__gt=last_pk).order_by("pk")[:batch_size]
            )
            if not batch:
                return rotated, unreadable
            for credential in batch:
                try:
                    credential.encrypted_key = crypto.rotate(credential.encrypted_key)
                except crypto.DecryptionError:
                    unreadable.append(credential)
                    continue
                credential.save(update_fields=["encrypted_key"])
                rotated += 1
            last_pk = batch[-1].pk
        if progress is not None:
            progress(rotated + len(unreadable))

"""Signals for what happens to provider records outside a model save (queryset updates)."""

from django.dispatch import Signal

# A credential was disabled by a conditional UPDATE (the provider rejected the key). Sent with sender=Credential
# and credential_id; caches of usable credentials listen (tenants.config_cache, connected in routing.apps).
credential_disabled = Signal()

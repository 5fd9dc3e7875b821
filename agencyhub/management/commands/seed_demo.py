"""Seed a demo: an admin login, a demo client with an API key, the model catalogue and credentials.

Safe to run again: it creates what is missing and never duplicates. The admin password and the demo API
key come from DEMO_ADMIN_PASSWORD / DEMO_API_KEY (written to .env by `make run`) so they stay the same.
"""

import json
import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from providers.catalog import catalog_load
from providers.models import Credential, ProviderKind
from providers.services import credential_set
from routing.services import starter_policy_ensure
from tenants.models import ApiKey, Tenant, hash_api_key
from tenants.services import api_key_issue

ENV_KEYS = {
    ProviderKind.ANTHROPIC: "ANTHROPIC_API_KEY",
    ProviderKind.OPENAI: "OPENAI_API_KEY",
    ProviderKind.OPENROUTER: "OPENROUTER_API_KEY",
}


class Command(BaseCommand):
    help = "Seed the demo (admin user, demo client and API key, catalogue, credentials, starter routing policy). Idempotent."

    def handle(self, *args, **options):
        report = {"catalog": catalog_load().as_dict()}
        with transaction.atomic():
            report["admin"] = self._admin()
            report["tenant"] = self._tenant()
            report["credentials"] = self._credentials()
            report["routing_policy"] = starter_policy_ensure().name
        self.stdout.write(json.dumps(report, indent=2))

    def _admin(self) -> dict:
        User = get_user_model()
        password = os.environ.get("DEMO_ADMIN_PASSWORD") or ""
        user = User.objects.filter(username="admin").first()
        if user is None:
            password = password or secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", "admin@example.com", password)
            return {"username": "admin", "password": password, "created": True}
        if password and not user.check_password(password):
            password = ""  # changed by staff since: not ours to reset
        return {"username": "admin", "password": password or "(unchanged; reset with: manage.py changepassword admin)", "created": False}

    def _tenant(self) -> dict:
        tenant, created = Tenant.objects.get_or_create(slug="demo", defaults={"name": "Demo Client", "daily_token_budget": 1_000_000})
        raw = os.environ.get("DEMO_API_KEY", "")
        if raw:
            key = ApiKey.objects.filter(key_hash=hash_api_key(raw)).first()
            if key is None:
                ApiKey.objects.create(tenant=tenant, name="demo", prefix=raw[:12], key_hash=hash_api_key(raw))
            elif key.is_revoked or not tenant.is_active:  # revoked by staff since: not ours to undo
                return {"slug": tenant.slug, "created": created,
                        "api_key": "(revoked, or its client deactivated, in the admin; issue one with: manage.py issue_api_key demo)"}
        elif not tenant.api_keys.exists():
            raw = api_key_issue(tenant=tenant, name="demo").raw
        return {"slug": tenant.slug, "created": created, "api_key": raw or "(unchanged; issue one with: manage.py issue_api_key demo)"}

    def _credentials(self) -> list[dict]:
        seeded = []
        for kind, var in ENV_KEYS.items():
            key = os.environ.get(var, "").strip()
            if key:
                credential_set(kind=kind, key=key, label="agency")
                seeded.append({"provider": kind.value, "from": var})
        if not Credential.objects.filter(provider__kind=ProviderKind.SANDBOX).exists():
            credential_set(kind=ProviderKind.SANDBOX, key="sandbox-needs-no-key", label="agency")
        seeded.append({"provider": "sandbox", "from": "built in"})
        return seeded

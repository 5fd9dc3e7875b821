import json

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from providers.services import credential_rotate_all


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored provider key with the newest FIELD_ENCRYPTION_KEYS entry. Put the new key first, "
        "keep the old ones, run this, then remove the old keys. Keys none of FIELD_ENCRYPTION_KEYS can decrypt are "
        "listed (exit status 1); the others are rotated anyway."
    )

    def handle(self, *args, **options):
        try:
            rotated, unreadable = credential_rotate_all(progress=lambda done: self.stderr.write(f"{done} credentials done"))
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        report = {
            "rotated": rotated,
            "unreadable": [
                {"id": c.pk, "provider": c.provider.kind, "tenant": c.tenant.slug if c.tenant_id else None, "label": c.label}
                for c in unreadable
            ],
        }
        self.stdout.write(json.dumps(report))
        if unreadable:
            raise CommandError(
                f"{len(unreadable)} provider key(s) could not be decrypted with any of FIELD_ENCRYPTION_KEYS (listed above; "
                "they were encrypted with a key no longer listed): keep the old keys until they are set again with "
                "set_credential or the admin"
            )

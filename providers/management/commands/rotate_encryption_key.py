import json

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from providers.crypto import DecryptionError
from providers.services import credential_rotate_all


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored provider key with the newest FIELD_ENCRYPTION_KEYS entry. Put the new key first, "
        "keep the old ones, run this, then remove the old keys."
    )

    def handle(self, *args, **options):
        try:
            rotated = credential_rotate_all()
        except (DecryptionError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps({"rotated": rotated}))

import getpass
import json
import os
import sys

from django.core.management.base import BaseCommand, CommandError

from providers.models import Credential, ProviderKind
from providers.services import credential_set
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Store a provider API key, encrypted. The key is read from standard input or from the environment "
        "variable named by --from-env; never from the command line (it would land in shell history and ps)."
    )

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=ProviderKind.values)
        parser.add_argument("--label", default="default")
        parser.add_argument("--tenant", metavar="SLUG", help="Store as this client's own key (BYOK).")
        parser.add_argument("--from-env", metavar="VAR", help="Read the key from this environment variable.")

    def handle(self, *args, kind, label, tenant, from_env, **options):
        if from_env:
            key = os.environ.get(from_env, "")
            if not key:
                raise CommandError(f"environment variable {from_env} is empty or not set")
        else:
            try:
                if sys.stdin.isatty():  # typed or pasted: never echo it to the terminal (scrollback, screen sharing)
                    key = getpass.getpass("Paste the API key (it is not shown), then press Enter: ", stream=sys.stderr)
                else:
                    key = sys.stdin.readline()
            except UnicodeDecodeError:
                raise CommandError("the key on standard input is not valid text (UTF-8)") from None
            except EOFError:  # Ctrl-D at the prompt
                key = ""
        key = key.strip()
        if not key:
            raise CommandError("no key given: pipe it on standard input or use --from-env VAR")
        if not label.strip() or len(label) > 100:
            raise CommandError("--label must be 1-100 characters")
        owner = None
        if tenant:
            owner = Tenant.objects.filter(slug=tenant).first()
            if owner is None:
                raise CommandError(f"no tenant with slug {tenant!r}")
            if kind == ProviderKind.SANDBOX:
                raise CommandError(Credential.SANDBOX_BYOK_ERROR)
        try:
            credential = credential_set(kind=kind, key=key, label=label, tenant=owner)
        except ValueError as exc:
            raise CommandError(str(exc)) from None  # never the key itself
        self.stdout.write(json.dumps({
            "id": credential.pk, "provider": kind, "tenant": tenant, "label": label,
            "byok": credential.is_byok, "key": credential.masked_key,
        }))

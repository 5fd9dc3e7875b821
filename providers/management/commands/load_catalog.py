import json

from django.core.management.base import BaseCommand, CommandError

from providers.catalog import CatalogError, catalog_load


class Command(BaseCommand):
    help = "Create or update the model catalogue and its dated prices from genai-prices' bundled data (offline)."

    def handle(self, *args, **options):
        try:
            report = catalog_load()
        except CatalogError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(report.as_dict(), indent=2))

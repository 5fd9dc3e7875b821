"""The "Finance" group: sees the ledger and roll-ups, sees and downloads invoices (PDF, CSV)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

FINANCE_GROUP = "Finance"
FINANCE_PERMISSIONS = [
    ("billing", "view_invoice"),
    ("billing", "view_invoiceline"),
    ("billing", "download_invoice"),
    ("billing", "view_dailyusage"),
    ("billing", "view_usagerecord"),
]


def create_finance_group(apps, schema_editor):
    # Permissions are normally created after all migrations ran (post_migrate): create billing's now.
    app_config = apps.get_app_config("billing")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.using(schema_editor.connection.alias).get_or_create(name=FINANCE_GROUP)
    for app_label, codename in FINANCE_PERMISSIONS:
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def remove_finance_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(name=FINANCE_GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0002_invoices"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_finance_group, remove_finance_group)]

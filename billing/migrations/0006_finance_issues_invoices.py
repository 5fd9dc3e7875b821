"""Finance generates, issues and credits the monthly invoices (billing.change_invoice): the admin's "Generate
invoices" page and its actions. Before, only a superuser could, though the invoices are Finance's to send."""

from django.db import migrations

FINANCE_GROUP = "Finance"


def _finance_and_permission(apps, schema_editor):
    group = apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(name=FINANCE_GROUP).first()
    permission = apps.get_model("auth", "Permission").objects.get(content_type__app_label="billing", codename="change_invoice")
    return group, permission


def grant(apps, schema_editor):
    group, permission = _finance_and_permission(apps, schema_editor)
    if group is not None:
        group.permissions.add(permission)


def revoke(apps, schema_editor):
    group, permission = _finance_and_permission(apps, schema_editor)
    if group is not None:
        group.permissions.remove(permission)


class Migration(migrations.Migration):
    dependencies = [("billing", "0005_ledger_admin_indexes")]

    operations = [migrations.RunPython(grant, revoke)]

"""Finance generates, issues and credits the monthly invoices (billing.change_invoice): the admin's "Generate
invoices" page and its actions. Before, only a superuser could, though the invoices are Finance's to send."""

from django.db import migrations

FINANCE_GROUP = "Finance"


def grant(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.using(schema_editor.connection.alias).filter(name=FINANCE_GROUP).first()
    if group is not None:
        group.permissions.add(Permission.objects.get(content_type__app_label="billing", codename="change_invoice"))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.using(schema_editor.connection.alias).filter(name=FINANCE_GROUP).first()
    if group is not None:
        group.permissions.remove(Permission.objects.get(content_type__app_label="billing", codename="change_invoice"))


class Migration(migrations.Migration):
    dependencies = [("billing", "0005_ledger_admin_indexes")]

    operations = [migrations.RunPython(grant, revoke)]

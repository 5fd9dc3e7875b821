"""Roles for the control panel.

- "Agency staff": runs the clients, providers, routing and conversations (view and change; add where staff create
  things: clients, keys, credentials, models, prices, assistants, routing). Sees the ledger and the budget alerts;
  never sees nor downloads invoices.
- "Finance" (billing/0003 gives it the invoices and the ledger): read-only everywhere else.

Here, in the top app, because it names every app's permissions. Superusers see everything regardless.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

AGENCY_STAFF_GROUP = "Agency staff"
FINANCE_GROUP = "Finance"

VIEW_CHANGE_ADD = ("view", "change", "add")
EVERYTHING = ("view", "change", "add", "delete")

AGENCY_STAFF = {
    "tenants": {"tenant": VIEW_CHANGE_ADD, "apikey": VIEW_CHANGE_ADD},
    "providers": {
        "provider": ("view", "change"), "credential": VIEW_CHANGE_ADD, "llmmodel": VIEW_CHANGE_ADD,
        "modelprice": ("view", "add"), "attemptlog": ("view",),
    },
    "routing": {
        "routingtarget": EVERYTHING, "targetfallback": EVERYTHING, "routingpolicy": EVERYTHING, "routingrule": EVERYTHING,
        "complexitycalibration": ("view",),
    },
    "conversations": {
        "assistant": VIEW_CHANGE_ADD, "apikeyscope": EVERYTHING, "conversation": ("view",), "message": ("view",),
        "feedback": ("view",),
    },
    "billing": {"usagerecord": ("view",), "dailyusage": ("view",), "budgetalert": ("view", "change")},
}

FINANCE_READ_ONLY = {
    "tenants": ("tenant", "apikey"),
    "providers": ("provider", "credential", "llmmodel", "modelprice", "attemptlog"),
    "routing": ("routingtarget", "targetfallback", "routingpolicy", "routingrule", "complexitycalibration"),
    "conversations": ("assistant", "apikeyscope", "conversation", "message", "feedback"),
    "billing": ("budgetalert",),
}


def _permissions(apps, alias, wanted: dict[str, dict[str, tuple[str, ...]]]):
    Permission = apps.get_model("auth", "Permission")
    codenames = {(app, f"{action}_{model}") for app, models in wanted.items() for model, actions in models.items() for action in actions}
    found = list(Permission.objects.using(alias).filter(content_type__app_label__in=list(wanted)).select_related("content_type"))
    chosen = [p for p in found if (p.content_type.app_label, p.codename) in codenames]
    missing = codenames - {(p.content_type.app_label, p.codename) for p in chosen}
    if missing:
        raise RuntimeError(f"permissions not found: {sorted(missing)}")
    return chosen


def create_roles(apps, schema_editor):
    alias = schema_editor.connection.alias
    # Permissions are normally created after all migrations ran (post_migrate): create them now.
    for label in AGENCY_STAFF:
        app_config = apps.get_app_config(label)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using=alias)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    staff, _ = Group.objects.using(alias).get_or_create(name=AGENCY_STAFF_GROUP)
    staff.permissions.add(*_permissions(apps, alias, AGENCY_STAFF))

    finance, _ = Group.objects.using(alias).get_or_create(name=FINANCE_GROUP)
    finance.permissions.add(*_permissions(apps, alias, {app: {m: ("view",) for m in models} for app, models in FINANCE_READ_ONLY.items()}))


def remove_roles(apps, schema_editor):
    alias = schema_editor.connection.alias
    Group = apps.get_model("auth", "Group")
    Group.objects.using(alias).filter(name=AGENCY_STAFF_GROUP).delete()
    finance = Group.objects.using(alias).filter(name=FINANCE_GROUP).first()
    if finance is not None:
        finance.permissions.remove(*_permissions(apps, alias, {app: {m: ("view",) for m in models} for app, models in FINANCE_READ_ONLY.items()}))


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0003_message_admin_indexes"),
        ("billing", "0005_ledger_admin_indexes"),
        ("routing", "0001_initial"),
        ("providers", "0003_admin_filter_indexes"),
        ("tenants", "0002_apikey_rate_limit_per_minute_and_more"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]

from django.conf import settings

from agencyhub.celery import app


def test_every_beat_entry_names_a_registered_task():
    app.loader.import_default_modules()
    missing = {name: entry["task"] for name, entry in settings.CELERY_BEAT_SCHEDULE.items() if entry["task"] not in app.tasks}
    assert missing == {}


def test_the_nightly_rollup_and_monthly_invoices_are_scheduled():
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"billing.rollup_yesterday", "billing.generate_monthly_invoices"} <= tasks

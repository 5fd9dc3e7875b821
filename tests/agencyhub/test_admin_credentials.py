"""A provider key typed into the admin is never shown again: not in the list, the form, nor the history.
Enabling and disabling from the list is recorded in the history."""

import pytest
from django.contrib.admin.models import LogEntry

from providers.models import Credential
from tests.agencyhub.admin_fixtures import openai  # noqa: F401

pytestmark = pytest.mark.django_db

PLAIN = "sk-live-Zq8c3Vd9Kt2mWx7PlainKey-9876"


def test_it_never_shows_a_saved_key_again(admin_client, openai):
    response = admin_client.post("/admin/providers/credential/add/", {
        "provider": openai.pk, "label": "agency", "api_key": PLAIN, "is_enabled": "on",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    credential = Credential.objects.get(label="agency")
    assert credential.get_key() == PLAIN and PLAIN not in credential.encrypted_key
    base = f"/admin/providers/credential/{credential.pk}"
    # A change that keeps the key, then one that replaces it: both in the history, neither with a key in it.
    admin_client.post(f"{base}/change/", {"provider": openai.pk, "label": "agency main", "api_key": "", "is_enabled": "on"})
    admin_client.post(f"{base}/change/", {"provider": openai.pk, "label": "agency main", "api_key": PLAIN[:-4] + "0000", "is_enabled": "on"})

    pages = {url: admin_client.get(url) for url in ("/admin/providers/credential/", f"{base}/change/", f"{base}/history/", "/admin/")}

    for url, page in pages.items():
        html = page.content.decode()
        assert page.status_code == 200, url
        assert PLAIN not in html and PLAIN[:-4] not in html, url
    assert "••••0000" in pages["/admin/providers/credential/"].content.decode()
    history = pages[f"{base}/history/"].content.decode()
    assert "Added." in history and "Changed" in history


def test_it_records_enable_and_disable_actions_in_the_history(admin_client, openai):
    credential = Credential(provider=openai, label="agency", needs_attention=True, is_enabled=False)
    credential.set_key("sk-abc-1234")
    credential.save()

    admin_client.post("/admin/providers/credential/", {"action": "enable", "_selected_action": [credential.pk]})
    admin_client.post("/admin/providers/provider/", {"action": "disable", "_selected_action": [openai.pk]})

    credential.refresh_from_db()
    openai.refresh_from_db()
    assert credential.is_enabled and not credential.needs_attention and not openai.is_enabled
    messages = set(LogEntry.objects.values_list("object_repr", "change_message"))
    assert (str(credential), "Enabled.") in messages and (str(openai), "Disabled.") in messages


def test_a_key_that_cannot_be_sent_gets_one_error_that_says_why(admin_client, openai):
    response = admin_client.post("/admin/providers/credential/add/", {
        "provider": openai.pk, "label": "agency", "api_key": "sk-live-one\nsk-live-two", "is_enabled": "on",
    })
    assert response.status_code == 200 and not Credential.objects.exists()
    errors = response.context["adminform"].form.errors["api_key"]
    assert len(errors) == 1 and "needs its API key" not in errors[0]

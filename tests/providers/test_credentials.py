import io
import json

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection

from providers import crypto
from providers.models import Credential
from providers.services import credential_rotate_all, credential_set
from tenants.models import Tenant

PLAIN = "sk-ant-test-0123456789abcdef"


@pytest.fixture
def keys(settings):
    first = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [first]
    return settings


def _raw_column(pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT encrypted_key, key_last4 FROM providers_credential WHERE id = %s", [pk])
        return " ".join(cursor.fetchone())


def test_it_never_stores_the_plain_key(db, keys):
    credential = credential_set(kind="anthropic", key=PLAIN)
    raw = _raw_column(credential.pk)
    assert PLAIN not in raw
    assert "0123456789" not in raw
    assert Credential.objects.get(pk=credential.pk).get_key() == PLAIN
    assert credential.masked_key == "••••cdef"


def test_rotation_keeps_every_key_readable(db, keys):
    credentials = [credential_set(kind="openai", key=f"{PLAIN}-{i}", label=f"k{i}") for i in range(3)]
    old_key = keys.FIELD_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    keys.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    assert credential_rotate_all(batch_size=2) == (3, [])
    # With only the new key left, every credential still decrypts.
    keys.FIELD_ENCRYPTION_KEYS = [new_key]
    for i, credential in enumerate(credentials):
        assert Credential.objects.get(pk=credential.pk).get_key() == f"{PLAIN}-{i}"


def test_a_wrong_key_gives_a_clear_error_not_garbage(db, keys):
    credential = credential_set(kind="openai", key=PLAIN)
    keys.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(crypto.DecryptionError, match="FIELD_ENCRYPTION_KEYS"):
        Credential.objects.get(pk=credential.pk).get_key()


def test_a_malformed_or_missing_key_setting_is_explained(db, settings):
    settings.FIELD_ENCRYPTION_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured, match="entry #1 is not a valid Fernet key"):
        crypto.encrypt("x")
    settings.FIELD_ENCRYPTION_KEYS = []
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEYS is empty"):
        crypto.encrypt("x")


def test_set_credential_reads_the_key_from_stdin_and_never_prints_it(db, keys, monkeypatch, tenant):
    monkeypatch.setattr("sys.stdin", io.StringIO(PLAIN + "\n"))
    out = io.StringIO()
    call_command("set_credential", "anthropic", "--tenant", tenant.slug, "--label", "client", stdout=out)
    assert PLAIN not in out.getvalue()
    report = json.loads(out.getvalue())
    assert report["byok"] is True and report["key"] == "••••cdef"
    assert Credential.objects.get(pk=report["id"]).get_key() == PLAIN


def test_set_credential_reads_from_an_env_var_and_replaces_the_key(db, keys, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-first-1111")
    call_command("set_credential", "openai", "--from-env", "MY_KEY", stdout=io.StringIO())
    monkeypatch.setenv("MY_KEY", "sk-second-2222")
    call_command("set_credential", "openai", "--from-env", "MY_KEY", stdout=io.StringIO())
    credential = Credential.objects.get()
    assert credential.get_key() == "sk-second-2222" and credential.tenant is None


def test_set_credential_refuses_an_empty_key(db, keys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    with pytest.raises(CommandError, match="no key given"):
        call_command("set_credential", "openai")


def test_rotate_encryption_key_command_reports_json(db, keys):
    credential_set(kind="openai", key=PLAIN)
    out = io.StringIO()
    call_command("rotate_encryption_key", stdout=out, stderr=io.StringIO())
    assert json.loads(out.getvalue()) == {"rotated": 1, "unreadable": []}


def test_one_key_no_configured_key_decrypts_is_named_and_the_others_are_rotated(db, keys, tenant):
    before = credential_set(kind="openai", key=PLAIN, label="first")
    old_key = keys.FIELD_ENCRYPTION_KEYS[0]
    stray = Fernet.generate_key().decode()
    keys.FIELD_ENCRYPTION_KEYS = [stray]
    bad = credential_set(kind="anthropic", key=PLAIN, label="stray", tenant=tenant)  # encrypted with a key about to go
    keys.FIELD_ENCRYPTION_KEYS = [old_key]
    after = credential_set(kind="openrouter", key=PLAIN, label="last")
    new_key = Fernet.generate_key().decode()
    keys.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 provider key"):
        call_command("rotate_encryption_key", stdout=out, stderr=io.StringIO())
    report = json.loads(out.getvalue())
    assert report["rotated"] == 2
    assert report["unreadable"] == [{"id": bad.pk, "provider": "anthropic", "tenant": tenant.slug, "label": "stray"}]
    keys.FIELD_ENCRYPTION_KEYS = [new_key]  # the others no longer need the old key
    assert Credential.objects.get(pk=before.pk).get_key() == Credential.objects.get(pk=after.pk).get_key() == PLAIN


def test_configure_provider_sets_the_base_url(db):
    out = io.StringIO()
    call_command("configure_provider", "openai", "--base-url", "http://127.0.0.1:9100/openai/v1/", stdout=out)
    assert json.loads(out.getvalue())["base_url"] == "http://127.0.0.1:9100/openai/v1"


def test_create_tenant_prints_a_working_key_once(db):
    out = io.StringIO()
    call_command("create_tenant", "globex", "--name", "Globex", "--daily-token-budget", "50000", stdout=out)
    report = json.loads(out.getvalue())
    assert report["api_key"].startswith("ahk_") and report["daily_token_budget"] == 50000
    assert report["webhook_secret"] == Tenant.objects.get(slug="globex").webhook_secret  # what verifies its callbacks
    with pytest.raises(CommandError, match="exists already"):
        call_command("create_tenant", "globex", "--name", "Globex")
    with pytest.raises(CommandError, match="timezone"):
        call_command("create_tenant", "initech", "--name", "Initech", "--timezone", "Mars/Olympus")
    out = io.StringIO()
    call_command("issue_api_key", "globex", stdout=out)
    assert json.loads(out.getvalue())["api_key"] != report["api_key"]


@pytest.mark.parametrize("key", ["sk-ключ-1234", "sk two words", "sk-tab\there"])
def test_a_key_that_cannot_go_in_an_http_header_is_refused_when_saved(db, keys, monkeypatch, key):
    monkeypatch.setattr("sys.stdin", io.StringIO(key + "\n"))
    with pytest.raises(CommandError, match="visible ASCII"):
        call_command("set_credential", "openai", stdout=io.StringIO())
    assert not Credential.objects.exists()


@pytest.mark.parametrize("url", ["ftp://example.com/v1", "http://127.0.0.1:99999/v1", "https://user:pw@example.com/v1",
                                 "http://127.0.0.1:9100/v1\x01"])
def test_configure_provider_refuses_a_base_url_the_sdks_cannot_call(db, url):
    with pytest.raises(CommandError):
        call_command("configure_provider", "openai", "--base-url", url, stdout=io.StringIO())


def test_set_credential_refuses_a_blank_label(db, keys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(PLAIN + "\n"))
    with pytest.raises(CommandError, match="--label"):
        call_command("set_credential", "openai", "--label", " ", stdout=io.StringIO())


def test_a_client_cannot_bring_its_own_sandbox_key(db, monkeypatch):
    """The sandbox answers canned text: as a client's own key it would answer (and bill) that client's real users.
    Refused by the command and by the admin's form (Credential.clean)."""
    client = Tenant.objects.create(slug="sandboxed", name="Sandboxed")
    monkeypatch.setenv("SANDBOX_KEY", "sk-x")
    with pytest.raises(CommandError, match="sandbox"):
        call_command("set_credential", "sandbox", "--tenant", client.slug, "--from-env", "SANDBOX_KEY", stdout=io.StringIO())
    from django.core.exceptions import ValidationError
    from providers.models import Provider
    provider, _ = Provider.objects.get_or_create(kind="sandbox")
    with pytest.raises(ValidationError, match="sandbox"):
        Credential(provider=provider, tenant=client, label="own").clean()
    credential_set(kind="sandbox", key="sk-x")  # the agency's own, for the demo: still fine

"""Encryption at rest for provider keys: MultiFernet over FIELD_ENCRYPTION_KEYS (newest first)."""

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(Exception):
    """A stored secret cannot be read with the configured keys."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS is empty: set it to one or more Fernet keys, newest first "
            "(generate one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')."
        )
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS entry #{position} is not a valid Fernet key (32 url-safe base64-encoded bytes)."
            ) from exc
    return MultiFernet(fernets)


def fernet() -> MultiFernet:
    return _fernet(tuple(k.strip() for k in settings.FIELD_ENCRYPTION_KEYS if k.strip()))


def encrypt(plain: str) -> str:
    return fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError(
            "Cannot decrypt a stored provider key: none of FIELD_ENCRYPTION_KEYS is the key it was encrypted with "
            "(was a key removed before `manage.py rotate_encryption_key` ran?)."
        ) from exc


def rotate(token: str) -> str:
    """Re-encrypt under the newest key."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError(
            "Cannot rotate a stored provider key: none of FIELD_ENCRYPTION_KEYS decrypts it (keep the old key after "
            "the new one until rotate_encryption_key has run)."
        ) from exc

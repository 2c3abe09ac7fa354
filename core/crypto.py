"""Encryption of secrets at rest (passwords inside target URLs and DSNs).

Fernet (AES-128-CBC + HMAC-SHA256) with a key from PERFPILOT_ENCRYPTION_KEY, or derived from
SECRET_KEY when that is unset. Changing the key makes stored secrets unreadable; re-enter them.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with the current key."""


@lru_cache(maxsize=4)
def _fernet(key_material: str) -> Fernet:
    digest = hashlib.sha256(f"perfpilot-secrets:{key_material}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _current() -> Fernet:
    return _fernet(settings.ENCRYPTION_KEY or settings.SECRET_KEY)


def encrypt(plain: str) -> str:
    return _current().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("stored secret cannot be decrypted with the current key; enter it again") from exc


def encrypted_url_property(mask: Callable[[str], str], *, doc: str) -> property:
    """A model's `url`, stored encrypted in `url_encrypted` with a masked copy in `url_display`.

    A property (not a custom descriptor), so that Django's Model(url=...) accepts it as well.
    """

    def get(instance) -> str:
        return decrypt(instance.url_encrypted) if instance.url_encrypted else ""

    def set_(instance, value: str) -> None:
        instance.url_encrypted = encrypt(value) if value else ""
        instance.url_display = mask(value) if value else ""

    return property(get, set_, doc=doc)

"""Secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) under keys from the environment.

``settings.SECRETS_ENCRYPTION_KEYS`` lists Fernet keys, newest first: the first one
encrypts, every one decrypts, so a key is rotated by prepending a new one, running
``manage.py rotate_secret_keys`` and then dropping the old one. Without keys (DEBUG and
tests only: a deploy check refuses it) one is derived from SECRET_KEY.

Stored values carry a prefix, so rows written before encryption (plaintext) still read
and are encrypted by the migration; an empty secret stays empty ("no key set").
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django import forms
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "fernet:"


class SecretDecryptionError(Exception):
    """A stored secret cannot be decrypted with any configured key."""


def _derived_key(secret_key: str) -> bytes:
    digest = hashlib.sha256(b"mission-control-secrets:" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest)


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    raw = [k.encode() for k in keys] if keys else [_derived_key(secret_key)]
    try:
        return MultiFernet([Fernet(k) for k in raw])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "SECRETS_ENCRYPTION_KEYS must hold Fernet keys (32 url-safe base64 bytes); "
            "generate one with `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`."
        ) from exc


def fernet() -> MultiFernet:
    keys = tuple(getattr(settings, "SECRETS_ENCRYPTION_KEYS", ()) or ())
    return _fernet(keys, settings.SECRET_KEY)


def is_encrypted(stored: str) -> bool:
    return stored.startswith(PREFIX)


def encrypt(plaintext: str) -> str:
    if not plaintext:
        return ""
    return PREFIX + fernet().encrypt(plaintext.encode()).decode()


@lru_cache(maxsize=1024)
def _decrypt_token(keys: MultiFernet, token: str) -> str:
    # Rows are read again and again (a worker's key with each of its sessions, every
    # tick): a token decrypts once per key set. A failure is not cached.
    return keys.decrypt(token.encode()).decode()


def decrypt(stored: str) -> str:
    """The plaintext of a stored value; a legacy plaintext value is returned as is."""
    if not stored or not is_encrypted(stored):
        return stored
    try:
        return _decrypt_token(fernet(), stored[len(PREFIX) :])
    except InvalidToken:
        # Never echo the stored value: it is the ciphertext of a secret.
        raise SecretDecryptionError(
            "A stored secret cannot be decrypted: is SECRETS_ENCRYPTION_KEYS missing the "
            "key it was written with?"
        ) from None


def rotate(stored: str) -> str:
    """Re-encrypt a stored value (or encrypt a plaintext one) under the newest key."""
    if not stored:
        return ""
    if not is_encrypted(stored):
        return encrypt(stored)
    try:
        return PREFIX + fernet().rotate(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise SecretDecryptionError("A stored secret cannot be decrypted.") from None


class EncryptedTextField(models.TextField):
    """A write-mostly secret: plaintext in Python, Fernet ciphertext in the database.

    ``max_length`` limits the plaintext (forms, serializers); the column is text,
    as the ciphertext is longer. Lookups other than ``=''`` are meaningless: every
    encryption of the same value differs.
    """

    description = "Encrypted text"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None:
            return value
        return decrypt(value)

    def to_python(self, value: Any) -> Any:
        # Fixtures carry ciphertext (see value_to_string); anything else is plaintext,
        # including a typed secret that merely looks like ciphertext.
        if isinstance(value, str) and is_encrypted(value):
            try:
                return decrypt(value)
            except SecretDecryptionError:
                return value
        return super().to_python(value)

    def get_prep_value(self, value: Any) -> Any:
        # Python values are always plaintext (from_db_value decrypts), so always encrypt.
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)

    def value_to_string(self, obj: models.Model) -> str:
        # dumpdata and other serializations never write a secret in the clear.
        return encrypt(self.value_from_object(obj) or "")

    def formfield(  # type: ignore[override]
        self, **kwargs: Any
    ) -> Any:
        # A one-line secret input, not the textarea of a TextField.
        defaults: dict[str, Any] = {
            "form_class": forms.CharField,
            "max_length": self.max_length,
            "widget": forms.PasswordInput(render_value=False),
        }
        defaults.update(kwargs)
        return models.Field.formfield(self, **defaults)

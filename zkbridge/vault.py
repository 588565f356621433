"""Secrets kept in the database, encrypted at rest with Fernet (the `cryptography` library: AES-128-CBC with an
HMAC-SHA256, authenticated; a well-kept standard rather than code of ours).

`ZKBRIDGE_ENCRYPTION_KEYS` lists Fernet keys, newest first (comma-separated): values are written under the
first and read under any, so a key is rotated by putting a new one in front, running `manage.py
rotate_encryption_key` (every stored secret re-encrypted under the newest key), then dropping the old one.
A stored value carries the prefix "fernet:"; one without it (written before encryption) is read as it is and
encrypted by the next write or rotation. Used by every app, this module imports none of them.
"""

from __future__ import annotations

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "fernet:"


@functools.lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k) for k in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.ZKBRIDGE_ENCRYPTION_KEYS))


def encrypt(value: str) -> str:
    if value == "" or value.startswith(PREFIX):
        return value
    return PREFIX + fernet().encrypt(value.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        return stored  # written before encryption: re-encrypted by the next write or rotation
    try:
        return fernet().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "a stored secret cannot be decrypted with ZKBRIDGE_ENCRYPTION_KEYS (was the key that wrote it removed "
            "before `manage.py rotate_encryption_key` ran?)"
        ) from None


def rotated(stored: str) -> str:
    """The value re-encrypted under the newest key (a plaintext one encrypted)."""
    if not stored:
        return stored
    if not stored.startswith(PREFIX):
        return encrypt(stored)
    return PREFIX + fernet().rotate(stored[len(PREFIX) :].encode()).decode()


class EncryptedTextField(models.TextField):
    """A text column stored encrypted (see the module's docstring); read and written as plain text in Python.
    It cannot be filtered on by value: look rows up by another column."""

    description = "Text encrypted at rest"

    def from_db_value(self, value, expression, connection):
        return None if value is None else decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return None if value is None else encrypt(str(value))

    def value_to_string(self, obj) -> str:  # dumpdata: never the secret
        return "(encrypted)"


def encrypted_fields() -> list[tuple[type[models.Model], str]]:
    from django.apps import apps

    return [
        (model, field.attname)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedTextField)
    ]


def rotate_all() -> int:
    """Every stored secret re-encrypted under the newest key (a plaintext one encrypted); how many values were
    rewritten. Secrets are a handful of rows: each is read and written on its own."""
    count = 0
    for model, column in encrypted_fields():
        for pk in model._default_manager.values_list("pk", flat=True):
            stored = _stored(model, column, pk)
            fresh = rotated(stored)
            if fresh != stored:  # (an already encrypted value is written as it is: see encrypt)
                model._default_manager.filter(pk=pk).update(**{column: fresh})
                count += 1
    return count


def _stored(model: type[models.Model], column: str, pk) -> str:
    """The text as stored (the field's from_db_value would decrypt it)."""
    from django.db import connection

    quote = connection.ops.quote_name
    name = quote(str(getattr(model._meta.get_field(column), "column", column)))
    key = quote(str(getattr(model._meta.pk, "column", "id")))
    table = quote(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {name} FROM {table} WHERE {key} = %s", [pk])  # noqa: S608 - quoted identifiers
        row = cursor.fetchone()
    return (row[0] or "") if row else ""

"""Secrets encrypted at rest (zkbridge/vault.py): the columns become encrypted text, and every value already
stored is encrypted (read as plaintext, written through the encrypting field)."""

import zkbridge.vault
from django.db import migrations


def encrypt_stored(apps, schema_editor):
    model = apps.get_model("sync", "InstallationSecret")
    for row in model.objects.all():
        model.objects.filter(pk=row.pk).update(value=row.value)
    model = apps.get_model("sync", "ProviderToken")
    for row in model.objects.all():
        model.objects.filter(pk=row.pk).update(access_token=row.access_token, refresh_token=row.refresh_token)


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0022_usage_entity"),
    ]

    operations = [
        migrations.AlterField(
            model_name="installationsecret",
            name="value",
            field=zkbridge.vault.EncryptedTextField(),
        ),
        migrations.AlterField(
            model_name="providertoken",
            name="access_token",
            field=zkbridge.vault.EncryptedTextField(blank=True),
        ),
        migrations.AlterField(
            model_name="providertoken",
            name="refresh_token",
            field=zkbridge.vault.EncryptedTextField(blank=True),
        ),
        migrations.RunPython(encrypt_stored, migrations.RunPython.noop),
    ]

"""Secrets encrypted at rest (zkbridge/vault.py): the columns become encrypted text, and every value already
stored is encrypted (read as plaintext, written through the encrypting field)."""

import zkbridge.vault
from django.db import migrations


def encrypt_stored(apps, schema_editor):
    model = apps.get_model("catalog", "ZuoraEntity")
    for row in model.objects.all():
        model.objects.filter(pk=row.pk).update(client_secret=row.client_secret)


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0006_zuora_entities"),
    ]

    operations = [
        migrations.AlterField(
            model_name="zuoraentity",
            name="client_secret",
            field=zkbridge.vault.EncryptedTextField(blank=True, verbose_name="OAuth client secret"),
        ),
        migrations.RunPython(encrypt_stored, migrations.RunPython.noop),
    ]

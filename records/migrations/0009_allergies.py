"""Allergies on medical records and their history.

An encrypted column is added without a default: each value is bound to its row, so no one
value (Django's default for the rows already there) can be written for every row. Rows
written before this have none (NULL, read as ``None``); new rows get their own ``""`` from
the model's default, then the second operation records that default in the state only.
"""

import keys.fields
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("records", "0008_agent_rls")]

    operations = [
        migrations.AddField(
            model_name="medicalrecord",
            name="allergies",
            field=keys.fields.EncryptedTextField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="medicalrecordrevision",
            name="allergies",
            field=keys.fields.EncryptedTextField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="medicalrecord",
            name="allergies",
            field=keys.fields.EncryptedTextField(blank=True, default="", null=True),
        ),
        migrations.AlterField(
            model_name="medicalrecordrevision",
            name="allergies",
            field=keys.fields.EncryptedTextField(blank=True, default="", null=True),
        ),
    ]

# Second factors (neonpro/accounts/mfa_models.py): authenticator apps with encrypted secrets, recovery codes.

import django.db.models.deletion
import keys.fields
import uuid
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0009_notification_recent'),
    ]

    operations = [
        migrations.CreateModel(
            name='RecoveryCodeSet',
            fields=[
                ('name', models.CharField(help_text='The human-readable name of this device.', max_length=64)),
                ('confirmed', models.BooleanField(default=True, help_text='Is this device ready for use?')),
                ('throttling_failure_timestamp', models.DateTimeField(blank=True, default=None, help_text='A timestamp of the last failed verification attempt. Null if last attempt succeeded.', null=True)),
                ('throttling_failure_count', models.PositiveIntegerField(default=0, help_text='Number of successive failed attempts.')),
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('user', models.ForeignKey(help_text='The user that this device belongs to.', on_delete=django.db.models.deletion.CASCADE, to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'recovery code set',
            },
        ),
        migrations.CreateModel(
            name='RecoveryCode',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('key_id', models.IntegerField(help_text='The audit MAC key the digest was made under.')),
                ('digest', models.BinaryField(help_text='HMAC of the code; the code itself is never stored.', max_length=32)),
                ('used_at', models.DateTimeField(blank=True, null=True)),
                ('device', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='codes', to='accounts.recoverycodeset')),
            ],
            options={
                'verbose_name': 'recovery code',
            },
        ),
        migrations.CreateModel(
            name='TOTPDevice',
            fields=[
                ('name', models.CharField(help_text='The human-readable name of this device.', max_length=64)),
                ('confirmed', models.BooleanField(default=True, help_text='Is this device ready for use?')),
                ('throttling_failure_timestamp', models.DateTimeField(blank=True, default=None, help_text='A timestamp of the last failed verification attempt. Null if last attempt succeeded.', null=True)),
                ('throttling_failure_count', models.PositiveIntegerField(default=0, help_text='Number of successive failed attempts.')),
                ('created_at', models.DateTimeField(auto_now_add=True, help_text='The date and time when this device was initially created in the system.', null=True)),
                ('last_used_at', models.DateTimeField(blank=True, help_text='The most recent date and time this device was used.', null=True)),
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('last_t', models.BigIntegerField(default=-1, help_text='Time step of the last accepted code (no reuse).')),
                ('user', models.ForeignKey(help_text='The user that this device belongs to.', on_delete=django.db.models.deletion.CASCADE, to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'authenticator app',
            },
        ),
        migrations.CreateModel(
            name='TOTPSecret',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('key', keys.fields.EncryptedCharField(help_text='The shared secret, hex (encrypted at rest).', max_length=80)),
                ('device', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='secret', to='accounts.totpdevice')),
            ],
            options={
                'verbose_name': 'authenticator secret',
            },
        ),
    ]

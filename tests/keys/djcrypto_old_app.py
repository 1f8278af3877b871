"""The old app: writes rows through django-cryptography-django5 ``encrypt()`` fields, in its own process.

Run as a script, it reads JSON ``{"settings": {...}, "rows": [{field: value}]}`` on stdin,
configures Django with exactly those settings (SECRET_KEY, optionally CRYPTOGRAPHY_KEY and
CRYPTOGRAPHY_SALT), saves each row with the ORM into an in-memory SQLite table, and prints
the stored bytes as JSON ``[{field: hex or null}]``. A fresh process is the honest way: the
package derives and caches its key from settings when it is first imported.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    payload = json.load(sys.stdin)
    import django
    from django.conf import settings

    settings.configure(
        **payload["settings"],
        INSTALLED_APPS=[],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
    )
    django.setup()

    from django.db import connection, models
    from django_cryptography.fields import encrypt

    class Record(models.Model):
        name = encrypt(models.CharField(max_length=100, null=True))
        born = encrypt(models.DateField(null=True))
        visits = encrypt(models.IntegerField(null=True))
        email = encrypt(models.CharField(max_length=254, null=True))

        class Meta:
            app_label = "old_app"

        def __str__(self) -> str:
            return f"Record {self.pk}"

    with connection.schema_editor() as editor:
        editor.create_model(Record)
    out = []
    for row in payload["rows"]:
        record = Record.objects.create(**row)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {', '.join(row)} FROM old_app_record WHERE id = %s", [record.pk])
            stored = cursor.fetchone()
        out.append({name: None if v is None else bytes(v).hex() for name, v in zip(row, stored, strict=True)})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

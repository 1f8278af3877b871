"""The daily key-rotation check, as a django-celery-beat task admins can see and change."""

from django.db import migrations


def schedule(apps, schema_editor):  # type: ignore[no-untyped-def]
    crontab_model = apps.get_model("django_celery_beat", "CrontabSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    crontab, _ = crontab_model.objects.get_or_create(
        minute="15", hour="3", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    task_model.objects.get_or_create(
        name="keys: rotate due data keys",
        defaults={"task": "keys.rotate_due_keys", "crontab": crontab, "enabled": True,
                  "description": "Rotate data keys past their age or encryption-count limit, then re-encrypt."},
    )


def unschedule(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name="keys: rotate due data keys").delete()


class Migration(migrations.Migration):
    dependencies = [("keys", "0002_lifecycle"), ("django_celery_beat", "0019_alter_periodictasks_options")]

    operations = [migrations.RunPython(schedule, unschedule)]

"""``audit_outcome_time`` (outcome, occurred_at): the security dashboard's denied accesses of the
last days as an index range, not a scan of the whole (ever-growing) audit log. Built
CONCURRENTLY (``atomic = False``): appends go on while it builds."""

from django.db import migrations, models

from neonpro.security.rls import AddIndexOnline


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("audit", "0003_keyed_chain")]

    operations = [
        AddIndexOnline(
            model_name="auditevent",
            index=models.Index(fields=["outcome", "occurred_at"], name="audit_outcome_time"),
        ),
    ]

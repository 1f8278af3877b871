"""Agents' patient sets, and the agents' clauses in the patient tables' row-level security.

* ``AgentAccess``: which patients an agent reaches (one patient, or the active care team of
  one clinician, per row), protected by its own policies (``rls.agent_policies()``: the
  agent reads its own rows, administrators read them, only the system writes).
* The three tables' policies become ``rls.agent_policies()``: ``planner_policies()`` plus the
  agents' clauses, in one transaction.

Reversible: the planner-shaped policies come back and the table goes.
"""

import django.db.models.deletion
import django.db.models.manager
import uuid
from django.conf import settings
from django.db import migrations, models

from neonpro.security.rls import (
    AGENT_ACCESS_TABLE,
    PATIENTS_TABLES,
    ProtectTable,
    ReplacePolicies,
    agent_policies,
    planner_policies,
)


class Migration(migrations.Migration):

    dependencies = [
        ('patients', '0007_planner_rls'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='AgentAccess',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('agent', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='agent_access', to=settings.AUTH_USER_MODEL)),
                ('care_team_of', models.ForeignKey(blank=True, db_index=False, help_text='A supervising clinician: the agent reaches their active care team.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('patient', models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='patients.patient')),
            ],
            options={
                'verbose_name': 'agent access',
                'verbose_name_plural': 'agent access',
                'base_manager_name': '_plain',
                'indexes': [models.Index(fields=['patient'], name='agentaccess_patient')],
                'constraints': [models.CheckConstraint(condition=models.Q(models.Q(('care_team_of__isnull', True), ('patient__isnull', False)), models.Q(('care_team_of__isnull', False), ('patient__isnull', True)), _connector='OR'), name='agentaccess_patient_or_care_team'), models.UniqueConstraint(condition=models.Q(('patient__isnull', False)), fields=('agent', 'patient'), name='agentaccess_agent_patient'), models.UniqueConstraint(condition=models.Q(('care_team_of__isnull', False)), fields=('agent', 'care_team_of'), name='agentaccess_agent_care_team')],
            },
            managers=[
                ('objects', django.db.models.manager.Manager()),
                ('_plain', django.db.models.manager.Manager()),
            ],
        ),
        ProtectTable(AGENT_ACCESS_TABLE, agent_policies()[AGENT_ACCESS_TABLE]),
        ReplacePolicies(PATIENTS_TABLES, agent_policies(), planner_policies()),
    ]

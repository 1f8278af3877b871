"""The agents' clauses in the clinical tables' row-level security.

The records, appointments and record history policies become ``rls.agent_policies()``:
``planner_policies()`` plus the agents' clauses (neonpro/security/rls.py), in one transaction.
Reversible: the planner-shaped policies come back.
"""

from django.db import migrations

from neonpro.security.rls import RECORDS_TABLES, ReplacePolicies, agent_policies, planner_policies


class Migration(migrations.Migration):
    dependencies = [
        ("records", "0007_planner_rls"),
        # The policies read patients_agentaccess.
        ("patients", "0008_agent_access"),
    ]

    operations = [
        ReplacePolicies(RECORDS_TABLES, agent_policies(), planner_policies()),
    ]

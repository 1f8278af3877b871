"""The building blocks of the first policies, which read plain settings (historical).

Only the migrations that created those policies (patients 0003, records 0002 and 0004) import
this: they must keep producing what they produced, on a database where the signed-identity
functions do not exist yet. ``security`` 0001 then replaces every such policy with one that
reads the identity through ``neonpro_identity_claim()`` (neonpro.security.rls.SIGNED). New
code never uses these: the application role can set those settings itself.
"""

from neonpro.security.rls import UNSIGNED

UID, ROLE, PATIENT = UNSIGNED.uid, UNSIGNED.role, UNSIGNED.patient
IS_SYSTEM, CARE_TEAM, GRANTED = UNSIGNED.is_system, UNSIGNED.care_team, UNSIGNED.granted

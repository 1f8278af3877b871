"""Medical records and appointments: encrypted clinical content, protected by RLS.

Arrives with the clinical-domain issue.
"""

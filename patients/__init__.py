"""Patients: identity and contact data, every PHI field encrypted by ``keys``."""

"""Append-only, hash-chained audit log of every access to PHI — which never records PHI."""

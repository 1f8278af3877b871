"""Medical-image pipeline: sniff, scan, validate, redact, compress, encrypt, store, verify.

Arrives with the imaging issue.
"""

"""The encryption core: envelope format, key providers, data keys and encrypted fields.

Nothing outside this package imports symmetric primitives from ``cryptography``;
everything goes through :mod:`keys.crypto` and :mod:`keys.fields`.
"""

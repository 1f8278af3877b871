"""Channels routing and consumers (WSS only, authenticated, origin-checked)."""

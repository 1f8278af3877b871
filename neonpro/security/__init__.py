"""Cross-cutting security: response headers, the TLS 1.3 server entry point."""

"""Database plumbing of the platform (the PostgreSQL backend NeonPro runs on)."""

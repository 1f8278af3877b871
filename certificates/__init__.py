"""Certificate inventory and lifecycle. This issue ships the development certificate."""

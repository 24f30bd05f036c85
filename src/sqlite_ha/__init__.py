"""sqlite-ha: a highly available, replicated SQLite cluster."""

__version__ = "0.1.0"

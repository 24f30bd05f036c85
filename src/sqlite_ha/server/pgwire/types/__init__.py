"""PostgreSQL types for SQLite values: OIDs announced, text and binary encodings, arrays."""

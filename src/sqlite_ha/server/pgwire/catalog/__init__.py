"""PostgreSQL's system catalog (pg_catalog, information_schema) over a SQLite database."""

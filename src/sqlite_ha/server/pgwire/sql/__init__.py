"""PostgreSQL SQL as SQLite runs it: the cheap lexer, sqlglot translation and rewrites, parameter types."""

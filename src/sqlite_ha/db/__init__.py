"""Everything that talks to SQLite. Nothing outside this package imports apsw."""

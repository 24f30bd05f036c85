"""Plain SQLite access: connections, guards, running statements, transactions, backups. Only this package
and `sqlite_ha.changes` (the storage side of replication) import apsw for data; the PostgreSQL catalog reads
SQLite through apsw too."""

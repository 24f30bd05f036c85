"""The PostgreSQL frontend/backend protocol 3.0, sans-IO: message codecs, parsers, password methods."""

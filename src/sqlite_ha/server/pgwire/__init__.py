"""PostgreSQL wire protocol front end.

``server.py`` listens and ``session.py`` runs one client's messages over the node (``handshake.py`` its start,
``commands.py`` the statements it answers itself, ``prepared.py`` what the extended protocol keeps). The
rest is by concern: ``wire/`` (the protocol, sans-IO), ``sql/`` (PostgreSQL SQL as SQLite runs it),
``types/`` (OIDs and encodings), ``catalog/`` (pg_catalog), ``copy/`` (COPY), ``forwarding/`` (sessions whose
writes run on the writer).
"""

"""The storage side of replication, inside each SQLite file: capturing a write transaction's row changes as a
change set (``capture``, with keys chosen so nodes cannot collide: ``autokeys``, ``rowids``), versioning rows
(``hlc``, ``meta``), and applying other nodes' change sets with last-writer-wins (``applier``, ``lww``,
``unique``, ``chunks``).

``sqlite_ha.db`` is plain SQLite access and knows nothing of this package; ``sqlite_ha.replication`` moves
change sets between nodes and knows nothing of SQL. This package joins the two, given to a database as hooks
at construction.
"""

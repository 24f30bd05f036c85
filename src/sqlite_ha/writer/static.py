"""Writer mode static (``--leader-static URL``, ``BASE_STATIC_WRITER``, go-ha's ``static:URL``): the node at
that URL writes, the others forward to it. No election: if it is down, writes wait for it (``no_writer``
after ``--writer-wait``). Its writes are fenced like any writer's, so a second node configured by mistake to
believe it is the writer cannot make the logs diverge."""

from __future__ import annotations

import time

from sqlite_ha.writer.role import Writer, WriterMode


class StaticWriter(WriterMode):
    name = "static"
    fenced = True

    def __init__(self, node: str, url: str, *, is_self: bool, pg_port: int | None) -> None:
        super().__init__(node)
        self.url = url
        self._writer = Writer(
            node=node if is_self else None,
            url=url,
            is_self=is_self,
            since=time.time(),
            pg_port=pg_port if is_self else None,
        )

"""The process's file descriptors against the connection caps.

Every connection holds a descriptor, and so do the databases (a writer, readers, WAL and shm files each), the
NATS connection and the log. If the caps allowed more connections than the process may open, a flood would
end in ``EMFILE`` — accept failing, SQLite unable to open a file — for everybody, before any client is told
503 or 53300. So at start the soft limit is raised as far as needed (towards the hard limit, which an
unprivileged process may do), and a warning says so when the caps still do not fit.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

RESERVE = 256  # descriptors kept for everything but client connections: databases, NATS, logs, threads


def needed(*caps: int) -> int:
    """Descriptors for connection caps (each with the connections answered over it) plus ``RESERVE``."""
    return RESERVE + sum(cap + max(16, cap // 10) for cap in caps)


def ensure_descriptors(count: int) -> int:
    """Raise the soft RLIMIT_NOFILE to ``count`` if it is lower and the hard limit allows; return the soft
    limit now in force, after a warning if it is still below ``count``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count:
        target = count if hard == resource.RLIM_INFINITY else min(hard, count)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                log.info("raised the open files limit from %d to %d for the connection caps", soft, target)
                soft = target
            except (ValueError, OSError) as e:
                log.warning("cannot raise the open files limit to %d: %s", target, e)
    if soft != resource.RLIM_INFINITY and soft < count:
        log.warning(
            "the open files limit (%d) is below what the connection caps need (%d): lower --max-connections "
            "and --pg-max-connections, or raise the limit (ulimit -n)",
            soft,
            count,
        )
    return soft

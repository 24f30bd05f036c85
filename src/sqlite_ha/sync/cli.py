"""``sqlite-ha sync``: a live local read replica from the command line, a thin layer over ``AsyncReplica``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from sqlite_ha.config import SETTINGS_BY_NAME, parse_duration
from sqlite_ha.errors import ConfigError, HAError
from sqlite_ha.replication.bootstrap import BootstrapError
from sqlite_ha.sync.options import SETTINGS, STATUS_INTERVAL, ReplicaOptions, replica_options


def _settings_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The node settings a replica takes, as ``serve`` spells them (``--stream`` is ha-sync's name for
    ``--replication-stream``)."""
    from sqlite_ha.cli import _option

    for name in reversed(SETTINGS):
        s = SETTINGS_BY_NAME[name]
        if name in _HELP:
            s = dataclasses.replace(s, help=_HELP[name])
        if name == "replication-stream":
            func = click.option(
                "--replication-stream",
                "--stream",
                s.attr,
                default=None,
                metavar="NAME",
                help=f"{s.help} [default: {s.default}]  (env {s.env})",
            )(func)
        else:
            func = _option(s)(func)
    return func


_HELP = {
    "replication-url": "NATS URL(s) of the cluster to replicate from (required)",
    "cluster-secret": "The cluster's secret: NATS credentials and the MACs every change set and snapshot "
    "must carry derive from it. Prefer HA_CLUSTER_SECRET or --cluster-secret-file: a flag shows in ps",
    "nats-user": "NATS user to log in as (instead of the cluster secret's credentials)",
    "nats-ca": "CA (PEM) that signed the NATS servers' certificates (tls:// URLs)",
    "from-latest-snapshot": "Start from the latest snapshot even when the stream still holds everything",
}


def _duration(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as e:
        raise ConfigError("--status-interval", str(e)) from None


@click.command("sync", context_settings={"show_default": False})
@click.argument("target", metavar="TARGET")
@click.option(
    "--database",
    "-d",
    "databases",
    multiple=True,
    metavar="ID",
    help="The cluster's database to replicate (repeatable; several go into the directory TARGET) "
    "[default: the name of the file TARGET]",
)
@click.option(
    "--durable",
    metavar="NAME",
    default=None,
    help="Read through durable consumers NAME_<database> that the server keeps across restarts "
    "[default: ephemeral consumers, removed when the replica stops]",
)
@click.option(
    "--deliver-policy",
    default="all",
    metavar="POLICY",
    help="ha-sync's delivery policy: all, or by_start_sequence=N for a copy of the database complete up to "
    "seq N-1; new, last and by_start_time are refused (they give an incomplete replica) [default: all]",
)
@click.option(
    "--status-interval",
    default=f"{STATUS_INTERVAL:g}s",
    metavar="DURATION",
    help=f"How often the lag is logged; 0 = never [default: {STATUS_INTERVAL:g}s]",
)
@click.option(
    "--status",
    "show_status",
    is_flag=True,
    help="Print how far TARGET is behind the stream (JSON) and exit; the replica need not be running",
)
@_settings_options
def sync_command(
    target: str,
    databases: tuple[str, ...],
    durable: str | None,
    deliver_policy: str,
    status_interval: str,
    show_status: bool,
    **flags: Any,
) -> None:
    """Keep TARGET, a local SQLite file (or a directory, for several databases), a live read replica of a
    cluster's database: it starts from the latest snapshot when the stream no longer holds everything, then
    follows the stream, and resumes from the position stored in the file after a restart.

    Any SQLite client can read TARGET while it updates (WAL); each replicated transaction appears whole.
    """
    from sqlite_ha import log
    from sqlite_ha.cli import warn_secret_flag

    given = {name.replace("_", "-"): v for name, v in flags.items() if v is not None}
    options = replica_options(
        target,
        databases=databases,
        durable=durable,
        deliver_policy=deliver_policy,
        status_interval=_duration(status_interval),
        settings=given,
    )
    log.setup(options.config.log_level)
    for name in given:
        if SETTINGS_BY_NAME[name].secret:
            warn_secret_flag(SETTINGS_BY_NAME[name])
    try:
        if show_status:
            from sqlite_ha.sync.status import file_status

            click.echo(json.dumps(asyncio.run(file_status(options)), indent=2))
            return
        asyncio.run(_run(options))
    except (ConfigError, BootstrapError):
        raise
    except HAError as e:
        print(f"sqlite-ha: error: {e.message}" + (f" ({e.hint})" if e.hint else ""), file=sys.stderr)
        sys.exit(1)


async def _run(options: ReplicaOptions) -> None:
    from sqlite_ha.cli import stop_on_signals
    from sqlite_ha.sync.replica import AsyncReplica

    stop = stop_on_signals()
    replica = AsyncReplica(options)
    try:
        # a signal during the start (a large snapshot downloading) stops it there, cleanly
        starting = asyncio.ensure_future(replica.start())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            await asyncio.wait({starting})
            return
        starting.result()
        paths = ", ".join(f"{ident} -> {path}" for ident, path in replica.paths.items())
        click.echo(f"sqlite-ha sync: replicating {paths}", err=True)
        await stop.wait()
    finally:
        await replica.stop()

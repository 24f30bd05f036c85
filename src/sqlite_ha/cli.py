"""The ``sqlite-ha`` command line: a thin click layer over ``config.resolve`` and ``node.run``.

Options are generated from ``config.SETTINGS`` so flags, environment variables, the config file and the docs
can never disagree. Every usage or configuration error prints one line and exits with status 2.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from sqlite_ha import __version__
from sqlite_ha.config import SETTINGS, Config, Setting, resolve
from sqlite_ha.errors import ConfigError, NatsServerError
from sqlite_ha.replication.bootstrap import BootstrapError

EXIT_USAGE = 2


def _option(s: Setting) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    decls = [s.flag] + ([f"-{s.short}"] if s.short else [])
    help_text = s.help + ("" if s.default in (None, "", False) or s.secret else f" [default: {_show(s)}]")
    help_text += f"  (env {s.env})"
    if s.is_flag:
        # A switch never takes the next argument ("-m app.db" means memory + a database); "--memory=false"
        # is rewritten to "--no-memory" by ``_go_style_switches``, as Go's flag package accepts it.
        decls[0] = f"{s.flag}/--no-{s.name}"
        return click.option(*decls, s.attr, default=None, help=help_text)
    return click.option(*decls, s.attr, default=None, help=help_text, metavar=s.placeholder)


def _show(s: Setting) -> str:
    if s.name.endswith(("timeout", "max-age")):
        return f"{s.default:g}s"
    return str(s.default)


def settings_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for s in reversed(SETTINGS):
        func = _option(s)(func)
    return click.option(
        "-c",
        "--config",
        "config_file",
        default=None,
        metavar="FILE",
        help="Config file of 'flag value' lines  (env HA_CONFIG)",
    )(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="sqlite-ha")
def cli() -> None:
    """sqlite-ha: highly available, replicated SQLite."""


@cli.command(context_settings={"show_default": False})
@click.argument("databases", nargs=-1, metavar="[DATABASE]...")
@settings_options
def serve(databases: tuple[str, ...], config_file: str | None, **flags: Any) -> None:
    """Serve DATABASE files (paths or file: DSNs; default ha.db) over HTTP, with an embedded NATS server.

    Settings come from flags, then HA_* environment variables, then the config file.
    """
    given = {name.replace("_", "-"): v for name, v in flags.items() if v is not None}
    config = resolve(given, databases=databases, config_file=config_file or os.environ.get("HA_CONFIG"))
    _serve(config, secret_flags=[s for s in SETTINGS if s.secret and s.name in given])


def _serve(config: Config, secret_flags: list[Setting] | None = None) -> None:
    from sqlite_ha import log
    from sqlite_ha.node import run

    log.setup(config.log_level)
    for s in secret_flags or ():
        warn_secret_flag(s)

    async def main() -> None:
        await run(config, stop_on_signals())

    with asyncio.Runner(loop_factory=event_loop_factory(config.event_loop)) as runner:
        runner.run(main())


def stop_on_signals() -> asyncio.Event:
    """An event SIGINT and SIGTERM set, for the running loop's process to stop cleanly; a second signal
    exits at once (the operator wants out now)."""
    stop = asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            os._exit(130)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    return stop


def warn_secret_flag(setting: Setting) -> None:
    """A secret given as a flag is in the process's command line, which every local user can read (``ps``,
    ``/proc/<pid>/cmdline``): say so once, naming the flag (never its value) and the safe ways."""
    logging.getLogger("sqlite_ha.config").warning(
        "%s was given on the command line, where every local user can read it (ps); set %s or %s_FILE "
        "(a file holding it) instead",
        setting.flag,
        setting.env,
        setting.env,
    )


def event_loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (``auto``): it runs the node's event loop, which is where nearly all
    of its CPU goes (HTTP, PG wire, NATS, applying), in C, for about 12% less CPU per replicated write."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise click.UsageError(
                "--event-loop uvloop: uvloop is not installed (pip install uvloop; it has no Windows build)"
            ) from None
        return None
    return uvloop.new_event_loop


@cli.command()
@click.option(
    "--token",
    "make_token",
    is_flag=True,
    help="Make a new random bearer token instead: print it, and the line the auth file stores",
)
@click.option(
    "--iterations",
    type=click.IntRange(1000),
    default=4096,
    show_default=True,
    help="PBKDF2 iterations of the verifier (PostgreSQL's scram_iterations)",
)
def passwd(make_token: bool, iterations: int) -> None:
    """Print the password_hash of a password for --auth-file (a SCRAM-SHA-256 verifier, as PostgreSQL stores).

    The password is asked for twice on a terminal, or read from the first line of standard input
    (echo "$PASSWORD" | sqlite-ha passwd). It never appears in the output.
    """
    from sqlite_ha.security.passwords import hash_password
    from sqlite_ha.security.users import new_token, token_hash

    if make_token:
        token = new_token()
        click.echo(f"token: {token}")
        click.echo(f"auth file: tokens: [{token_hash(token)}]")
        return
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise click.UsageError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise click.UsageError("the password is empty")
    click.echo(hash_password(password, iterations=iterations))


def _admin_commands() -> None:
    from sqlite_ha.admin import load_command, snapshot_group
    from sqlite_ha.sync.cli import sync_command

    cli.add_command(load_command)
    cli.add_command(snapshot_group)
    cli.add_command(sync_command)


_admin_commands()


def _go_style_switches(argv: list[str]) -> list[str]:
    """Rewrite ``--memory=true|false`` (Go flag syntax, used by ``ha`` users) into click's switch pair."""
    from sqlite_ha.config import parse_bool

    switches = {s.flag for s in SETTINGS if s.is_flag} | {
        f"-{s.short}" for s in SETTINGS if s.is_flag and s.short
    }
    out = []
    for arg in argv:
        flag, sep, value = arg.partition("=")
        if sep and flag in switches:
            long = next(s.flag for s in SETTINGS if flag in (s.flag, f"-{s.short}"))
            try:
                out.append(long if parse_bool(value) else "--no-" + long[2:])
            except ValueError as e:
                raise ConfigError(long, str(e)) from None
            continue
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> None:
    try:
        argv = _go_style_switches(sys.argv[1:] if argv is None else argv)
        cli.main(args=argv, prog_name="sqlite-ha", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.Abort:
        sys.exit(130)
    except click.UsageError as e:
        _fail(e.format_message(), EXIT_USAGE)
    except ConfigError as e:
        _fail(e.message, EXIT_USAGE)
    except NatsServerError as e:
        _fail(e.message, EXIT_USAGE if "already in use" in e.message else 1)
    except BootstrapError as e:
        _fail(e.message + (f" ({e.hint})" if e.hint else ""), 1)
    except KeyboardInterrupt:
        sys.exit(130)


def _fail(message: str, code: int) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "error"
    print(f"sqlite-ha: error: {first}", file=sys.stderr)
    sys.exit(code)

"""The ``sqlite-ha`` command line: a thin click layer over ``config.resolve`` and ``node.run``.

Options are generated from ``config.SETTINGS`` so flags, environment variables, the config file and the docs
can never disagree. Every usage or configuration error prints one line and exits with status 2.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from sqlite_ha import __version__
from sqlite_ha.config import SETTINGS, Config, Setting, resolve
from sqlite_ha.errors import ConfigError, NatsServerError

EXIT_USAGE = 2


def _option(s: Setting) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    decls = [s.flag] + ([f"-{s.short}"] if s.short else [])
    help_text = s.help + ("" if s.default in (None, "", False) or s.secret else f" [default: {_show(s)}]")
    help_text += f"  (env {s.env})"
    if s.is_flag:
        # "--memory" alone means true, "--memory=false" is accepted too, as Go's flag package does.
        return click.option(*decls, s.attr, is_flag=False, flag_value="true", default=None, help=help_text,
                            metavar="[BOOL]")
    return click.option(*decls, s.attr, default=None, help=help_text, metavar=s.metavar or "TEXT")


def _show(s: Setting) -> str:
    if s.name.endswith(("timeout", "max-age")):
        return f"{s.default:g}s"
    return str(s.default)


def settings_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for s in reversed(SETTINGS):
        func = _option(s)(func)
    return click.option("-c", "--config", "config_file", default=None, metavar="FILE",
                        help="Config file of 'flag value' lines  (env HA_CONFIG)")(func)


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
    _serve(config)


def _serve(config: Config) -> None:
    from sqlite_ha import log
    from sqlite_ha.node import run

    log.setup(config.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals > 1:
                os._exit(130)  # a second Ctrl-C: the operator wants out now
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        await run(config, stop)

    asyncio.run(main())


def main(argv: list[str] | None = None) -> None:
    try:
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
    except KeyboardInterrupt:
        sys.exit(130)


def _fail(message: str, code: int) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "error"
    print(f"sqlite-ha: error: {first}", file=sys.stderr)
    sys.exit(code)

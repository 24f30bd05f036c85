"""Lint and types are part of the test run (ruff on everything, strict mypy on the package)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff() -> None:
    result = run("ruff", "check", "src", "tests", "bench", "examples")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_setting_is_documented() -> None:
    from sqlite_ha.config import SETTINGS

    cli_doc = (ROOT / "docs" / "cli.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for s in SETTINGS:
        assert f"`{s.flag}" in cli_doc or f", {s.flag}`" in cli_doc, f"{s.flag} missing from docs/cli.md"
        assert s.flag in readme, f"{s.flag} missing from the README's configuration table"


def test_every_command_has_help_and_docs() -> None:
    import click

    from sqlite_ha.cli import cli

    cli_doc = (ROOT / "docs" / "cli.md").read_text()

    def walk(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
        found = []
        for name, command in group.commands.items():
            found.append((f"{prefix}{name}", command))
            if isinstance(command, click.Group):
                found += walk(command, f"{prefix}{name} ")
        return found

    for name, command in walk(cli, ""):
        assert (command.help or "").strip(), f"sqlite-ha {name} has no help text"
        assert f"sqlite-ha {name}" in cli_doc, f"sqlite-ha {name} missing from docs/cli.md"

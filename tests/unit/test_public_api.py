"""The public API of ``import sqlite_ha``: every name listed resolves, and importing the package is cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

import sqlite_ha


def test_every_public_name_resolves() -> None:
    for name in sqlite_ha.__all__:
        assert getattr(sqlite_ha, name) is not None, name
    assert sqlite_ha.connect.__module__ == "sqlite_ha.driver.dbapi"
    assert sqlite_ha.aio.connect is not sqlite_ha.connect


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        sqlite_ha.no_such_name  # noqa: B018


def test_importing_the_package_loads_no_node_and_no_server() -> None:
    """The command line imports the package for every command: nothing heavy may load until used."""
    code = (
        "import sys, sqlite_ha; "
        "print(','.join(m for m in ('sqlite_ha.node', 'sqlite_ha.driver.connection', 'aiohttp', 'apsw', "
        "'nats') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == ""

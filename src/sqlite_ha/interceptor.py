"""Load the user's change-set interceptor named by ``-i/--interceptor module:object``."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from sqlite_ha.changes.store import ChangeSetInterceptor
from sqlite_ha.errors import ConfigError


def load(spec: str) -> ChangeSetInterceptor:
    """Import ``module:object``; a class is instantiated without arguments. The object needs
    ``before_apply(cs, conn) -> bool`` and ``after_apply(cs, conn, error)``."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # an import error of any kind is the user's configuration to fix
        raise ConfigError("--interceptor", f"cannot import {module_name!r}: {e}") from e
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError("--interceptor", f"{module_name!r} has no {attr!r}")
    if inspect.isclass(obj):
        obj = obj()
    for method in ("before_apply", "after_apply"):
        if not callable(getattr(obj, method, None)):
            raise ConfigError("--interceptor", f"{spec} has no {method}() method")
    return obj  # type: ignore[no-any-return]

"""Names of a package imported on first use (PEP 562's module ``__getattr__``).

A package whose ``__init__`` imports every submodule makes each user pay for all of them: the
store's SQLAlchemy for ``tilerunner status``, pyarrow for a GeoJSON run. Such a package
names its exports for type checkers under ``TYPE_CHECKING`` and sets
``__getattr__ = exports_on_use(__name__, {...})``; ``from package import name`` then imports
only the submodule that holds ``name``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["exports_on_use"]


def exports_on_use(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``homes`` maps each exported name to the
    submodule (relative to ``package``) that defines it; a name is imported once, then kept
    in the package's namespace."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = f"{package}.{home}"
        __import__(module)  # not importlib.import_module: -X importtime sees only the statement
        value = getattr(sys.modules[module], name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__

"""Modules imported on first use.

A package whose ``__init__`` imports every submodule makes each user pay for all of them: the
store's SQLAlchemy for ``tilerunner status``, pyarrow for a GeoJSON run. Such a package
names its exports for type checkers under ``TYPE_CHECKING`` and sets
``__getattr__ = exports_on_use(__name__, {...})`` (PEP 562's module ``__getattr__``);
``from package import name`` then imports only the submodule that holds ``name``.

A dependency that imports an optional library whenever it is installed makes every process
pay for it too: :func:`defer_within` gives that one importer a stand-in that imports the
library when it is used. Written here because the standard library's ``LazyLoader`` would make
the library lazy for every importer, and on Python 3.11 lets a second thread see the module
half-initialised while the first one runs it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib.machinery import ModuleSpec, PathFinder
from types import ModuleType
from typing import Any

__all__ = ["defer_within", "exports_on_use"]


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


class _StandIn(ModuleType):
    """Stands for a module until one of its names is used, then imports it and answers."""

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(self.__name__), name)


class _LoaderWithStandIn:
    """A module's loader that executes it with ``deferred`` in ``sys.modules`` as a stand-in, so
    that its ``import deferred`` binds the stand-in; ``sys.modules`` is as before afterwards."""

    def __init__(self, loader: Any, deferred: str) -> None:
        self._loader = loader
        self._deferred = deferred

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        created: ModuleType | None = self._loader.create_module(spec)
        return created

    def exec_module(self, module: ModuleType) -> None:
        stand_in = _StandIn(self._deferred)
        placed = sys.modules.setdefault(self._deferred, stand_in) is stand_in
        try:
            self._loader.exec_module(module)
        finally:
            if placed and sys.modules.get(self._deferred) is stand_in:
                del sys.modules[self._deferred]

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename ... of the real loader
        return getattr(self._loader, name)


class _DeferWithin:
    """A meta path finder, used once: the module ``importer`` gets a stand-in for ``deferred``."""

    def __init__(self, importer: str, deferred: str) -> None:
        self._importer = importer
        self._deferred = deferred

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != self._importer:
            return None
        with contextlib.suppress(ValueError):  # another thread got here first
            sys.meta_path.remove(self)
        if self._deferred in sys.modules or importlib.util.find_spec(self._deferred) is None:
            return None  # already imported, or not installed: the import goes as usual
        spec = PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _LoaderWithStandIn(spec.loader, self._deferred)  # type: ignore[assignment]
        return spec


def defer_within(importer: str, deferred: str) -> None:
    """Let the module ``importer``, when it is first imported, ``import deferred`` without
    importing it: it gets a stand-in that imports ``deferred`` when one of its names is used.

    For a dependency that imports an optional library eagerly: rasterio's ``rasterio.session``
    imports boto3 (0.12 s: botocore, s3transfer, urllib3) whenever boto3 is installed, only to
    make an AWS session if an ``s3://`` URL is opened. Only ``importer`` sees the stand-in;
    every other ``import deferred`` is the real one. No-op when ``importer`` is imported already.
    """
    if importer not in sys.modules:
        sys.meta_path.insert(0, _DeferWithin(importer, deferred))

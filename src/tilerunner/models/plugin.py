"""Python plugin models: ``package.module:ClassName`` and the ``tilerunner.models`` entry points.

Loading user code fails in many ways (not installed, typo in the class name, wrong
constructor parameters, a class that is not a model); each becomes an
:class:`~tilerunner.errors.InvalidRequestError` that says what to fix, because the person
seeing it typed the spec. :func:`wrap_model` checks the optional attributes of the contract
once, so nothing downstream has to.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import cast

from tilerunner.errors import InvalidRequestError, ModelError, UnknownNameError
from tilerunner.models.contract import TASKS, LoadedModel, Model, Task

__all__ = [
    "ENTRY_POINT_GROUP",
    "ModelParams",
    "entry_point_models",
    "is_plugin_spec",
    "load_plugin",
    "wrap_model",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "tilerunner.models"
_PLUGIN_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class ModelParams:
    """Typed access to ``--model-param key=value`` strings, for backends and plugin authors.

    Values may already be numbers (a job document's JSON); strings are converted. A bad value
    or a parameter nobody read (:meth:`check_all_used`) is an :class:`InvalidRequestError`
    naming the parameter, so a typo such as ``treshold=0.5`` is never silently ignored.
    """

    def __init__(self, params: Mapping[str, object] | None, owner: str) -> None:
        self._params = dict(params or {})
        self._owner = owner
        self._used: set[str] = set()

    def _raw(self, key: str) -> object | None:
        self._used.add(key)
        return self._params.get(key)

    def _bad(self, key: str, value: object, expected: str) -> InvalidRequestError:
        return InvalidRequestError(
            f"{self._owner}: parameter {key}={value!r} is not {expected}; fix --model-param {key}"
        )

    def get_float(self, key: str, default: float) -> float:
        value = self._raw(key)
        if value is None:
            return default
        try:
            return float(str(value))
        except (TypeError, ValueError):
            raise self._bad(key, value, "a number") from None

    def get_int(self, key: str, default: int | None) -> int | None:
        value = self._raw(key)
        if value is None:
            return default
        try:
            return int(str(value))
        except (TypeError, ValueError):
            raise self._bad(key, value, "an integer") from None

    def get_str(self, key: str, default: str | None = None) -> str | None:
        value = self._raw(key)
        return default if value is None else str(value)

    def check_all_used(self) -> None:
        """Reject parameters that were never read (typos), suggesting the known ones."""
        unknown = sorted(set(self._params) - self._used)
        if unknown:
            raise UnknownNameError(
                f"parameter for {self._owner}", unknown[0], self._used, "see tilerunner models"
            )


def is_plugin_spec(spec: str) -> bool:
    """True for ``package.module:ClassName``."""
    return bool(_PLUGIN_SPEC.match(spec))


def entry_point_models() -> dict[str, str]:
    """Models that installed packages register: ``{name: "module:Class"}``."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_plugin(spec: str, params: Mapping[str, str], *, name: str) -> LoadedModel:
    """Import ``module:Class``, construct it with ``params`` and wrap it."""
    if not is_plugin_spec(spec):
        raise InvalidRequestError(
            f"model {spec!r} is not of the form package.module:ClassName; fix the spec"
        )
    module_name, class_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise InvalidRequestError(
            f"cannot import {module_name!r} for model {spec!r} ({exc}); install the package "
            "that provides it or add its folder to PYTHONPATH"
        ) from exc
    except Exception as exc:  # importing user code: any failure is the plugin's
        raise ModelError(
            f"importing {module_name!r} for model {spec!r} raised {type(exc).__name__}: {exc}; "
            "fix the module so it imports cleanly"
        ) from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        known = [n for n, v in vars(module).items() if inspect.isclass(v) and not n.startswith("_")]
        raise UnknownNameError(f"class in module {module_name!r}", class_name, known)
    if not inspect.isclass(cls):
        raise InvalidRequestError(f"{spec!r} is a {type(cls).__name__}, not a class; name a class")
    try:
        impl = cls(**dict(params))
    except TypeError as exc:
        raise InvalidRequestError(
            f"model {spec!r} does not accept these parameters ({exc}); "
            f"check the --model-param names ({', '.join(sorted(params)) or 'none given'})"
        ) from exc
    except ValueError as exc:
        raise InvalidRequestError(f"model {spec!r} rejected its parameters: {exc}") from exc
    except Exception as exc:  # constructing user code: any other failure is the model's
        raise ModelError(
            f"model {spec!r} raised {type(exc).__name__} while loading: {exc}"
        ) from exc
    return wrap_model(impl, name=name, spec=spec)


def wrap_model(impl: object, *, name: str, spec: str, backend: str = "plugin") -> LoadedModel:
    """Check ``impl`` against the model contract and wrap it in a :class:`LoadedModel`."""
    where = f"model {spec!r}"
    predict = getattr(impl, "predict", None)
    if not callable(predict):
        raise InvalidRequestError(f"{where} has no predict(tiles) method; add one")
    task = getattr(impl, "task", None)
    if task not in TASKS:
        raise InvalidRequestError(
            f"{where} has task {task!r}; set task to one of {', '.join(TASKS)}"
        )
    classes = getattr(impl, "classes", None) or []
    if not isinstance(classes, list | tuple) or not all(isinstance(c, str) for c in classes):
        raise InvalidRequestError(f"{where}: classes must be a list of names (str)")
    input_range = getattr(impl, "input_range", None)
    if input_range is not None:
        try:
            low, high = (float(v) for v in input_range)
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(f"{where}: input_range must be (low, high) numbers") from exc
        if not low < high:
            raise InvalidRequestError(f"{where}: input_range {input_range} needs low < high")
        input_range = (low, high)
    tile_size = getattr(impl, "tile_size", None)
    if tile_size is not None and (not isinstance(tile_size, int) or tile_size < 1):
        raise InvalidRequestError(f"{where}: tile_size must be a positive int, not {tile_size!r}")
    input_bands = getattr(impl, "input_bands", None)
    if input_bands is not None and (not isinstance(input_bands, int) or input_bands < 1):
        raise InvalidRequestError(
            f"{where}: input_bands must be a positive int, not {input_bands!r}"
        )
    wants_windows = bool(getattr(impl, "wants_windows", False))
    if wants_windows and not _accepts_windows(predict):
        raise InvalidRequestError(
            f"{where} sets wants_windows but predict() has no 'windows' parameter; add one"
        )
    logger.debug("loaded model %s (%s, %s)", name, spec, task)
    return LoadedModel(
        name=name,
        spec=spec,
        task=cast(Task, task),
        impl=cast(Model, impl),
        classes=list(classes),
        input_range=input_range,
        tile_size=tile_size,
        wants_windows=wants_windows,
        native_input=bool(getattr(impl, "native_input", False)),
        input_bands=input_bands,
        backend=backend,
    )


def _accepts_windows(predict: object) -> bool:
    try:
        parameters = inspect.signature(predict).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True  # builtins without a signature: trust the declaration
    return "windows" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )

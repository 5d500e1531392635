"""ONNX Runtime for the backends that run ``.onnx`` files: its import, sessions and errors.

Every ONNX backend (:mod:`tilerunner.models.onnx`, :mod:`tilerunner.models.csmask`) opens its
session here, so all of them pick providers the same way (CUDA first when present) and never
let idle intra-op threads spin on the CPU that reader threads need between batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tilerunner.errors import InvalidRequestError

__all__ = ["PREFERRED_PROVIDERS", "create_session", "onnxruntime_module", "runtime_errors"]

PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def onnxruntime_module() -> Any:
    """The ``onnxruntime`` module, or a one-line error naming the extra to install."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise InvalidRequestError(
            "ONNX models need onnxruntime; install the extra: pip install 'tilerunner[onnx]'"
        ) from exc
    return onnxruntime


def runtime_errors() -> tuple[type[BaseException], ...]:
    """The exception types ONNX Runtime raises when loading or running a model."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "NoSuchFile", "InvalidProtobuf", "RuntimeException",
             "InvalidGraph", "EPFail", "NotImplemented", "ModelLoaded", "NoModel")  # fmt: skip
    return (RuntimeError, *(getattr(state, n) for n in names if hasattr(state, n)))


def create_session(
    path: Path, *, intra_op_threads: int | None = None, providers: list[str] | None = None
) -> Any:
    """An inference session of ``path`` (raises one of :func:`runtime_errors` if it fails)."""
    ort = onnxruntime_module()
    options = ort.SessionOptions()
    # Spinning worker threads burn the CPU that the reader threads need between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    available = ort.get_available_providers()
    chosen = providers or [p for p in PREFERRED_PROVIDERS if p in available]
    return ort.InferenceSession(str(path), options, providers=chosen)

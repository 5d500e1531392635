"""Bytecode for the code a benchmark runs, written once, as an install from a wheel has it.

pip compiles a package's modules when it installs it from a wheel, but not the modules of an
editable checkout (``pip install -e``), and with ``PYTHONDONTWRITEBYTECODE`` set (as it is on
some machines and containers) Python never writes them itself: every ``tilerunner`` process of
a checkout then compiles its 120-odd modules from source, about 0.3 s of each start measured
here, which the peers, installed from wheels, never pay. :func:`compile_for` writes the
bytecode of the ``tilerunner`` package a tool's environment imports (a ``--src`` checkout
first on ``PYTHONPATH``, or the installed one) and of ``bench/`` itself, so every tool starts
as a user's install does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["compile_for"]

BENCH = Path(__file__).resolve().parent
_done: set[str] = set()

_SCRIPT = (
    "import compileall, os, sys, tilerunner\n"
    "ok = compileall.compile_dir(os.path.dirname(tilerunner.__file__), quiet=1)\n"
    "ok = compileall.compile_dir(sys.argv[1], quiet=1, maxlevels=0) and ok\n"
    "sys.exit(0 if ok else 1)\n"
)


def compile_for(env: dict[str, str]) -> None:
    """Write the bytecode of the ``tilerunner`` that ``env`` imports, and of ``bench/``."""
    key = env.get("PYTHONPATH", "")
    if key in _done:
        return
    subprocess.run([sys.executable, "-c", _SCRIPT, str(BENCH)], env=env, check=True)
    _done.add(key)

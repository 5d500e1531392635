"""Running the real ``tilerunner`` command in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS / "support"), env.get("PYTHONPATH", "")])
    env.setdefault("TILERUNNER_LEASE_SECONDS", "5")
    env.update(extra)
    return env


def tilerunner(
    *args: str, cwd: Path, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tilerunner", *args],
        cwd=cwd, env=cli_env(**env), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def features(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text())["features"])


def pixel_boxes(path: Path) -> list[tuple[float, ...]]:
    """The output boxes, sorted, rounded to 1e-6 px."""
    return sorted(tuple(round(v, 6) for v in f["properties"]["pixel_bbox"]) for f in features(path))

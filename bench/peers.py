"""Peer benchmark: tilerunner against SAHI and a plain rasterio loop, same model, pixels, tiles.

Each tool runs as its own process, as a user runs it, and is timed from start to exit while
the resident memory of its whole process tree is sampled (``bench/proctree.py``):

* **tilerunner**: ``tilerunner run IMAGE --model PLUGIN --tile-size 512 --overlap 64 -o out.csv``
  (every other setting at its default: one worker process, batch 8, two reader threads);
* **sahi**: SAHI's ``get_sliced_prediction`` over the same tiles, the plugin wrapped as a SAHI
  ``DetectionModel`` (``bench/sahi_plugin.py``, ``bench/peer_tools.py``);
* **loop**: rasterio window reads tile by tile, the model on a batch of one, NMS at the end.

Settings: **local** (the DEFLATE COG on local disk and a compute-heavy model; the model alone
over pre-read tiles is timed as well), **http** (the same COG from ``RangeServer`` on loopback
with 0, 50 and 100 ms added to every request; a cheap model, so reading dominates) and
**memory** (peak RSS of each tool's tree on 8192, 16384 and 32768 px square JPEG GeoTIFFs).
The scene has its objects across tile seams (``bench/seam_scene.py``), so each run's boxes are
scored against the truth (:func:`tilerunner.testing.scoring.score_detections`).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from numpy.typing import NDArray

from bytecode import compile_for
from pipeline import make_scene
from plugins import make_heavy_onnx
from proctree import run_sampled
from seam_scene import make_seam_scene
from tilerunner.testing.range_server import RangeServer
from tilerunner.testing.scoring import score_detections

__all__ = ["ToolRun", "run_peers"]

BENCH = Path(__file__).resolve().parent
TOOLS = ("tilerunner", "sahi", "loop")
CHEAP = ("tilerunner.testing.models:FakeDetector", ())


@dataclass(frozen=True, slots=True)
class ToolRun:
    """One tool over one image: wall seconds, tree peak, boxes kept and their seam score."""

    setting: str
    tool: str
    seconds: float
    cpu_seconds: float
    peak_tree_bytes: int
    processes: int
    boxes: int
    score: dict[str, int] | None
    details: dict[str, Any] = field(default_factory=dict)


def _env() -> dict[str, str]:
    """The tools' environment: ``bench/`` importable, so plugins load in tilerunner's workers."""
    path = os.pathsep.join(p for p in (str(BENCH), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def _read_csv_boxes(path: Path) -> NDArray[np.float64]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [[float(r[k]) for k in ("x0", "y0", "x1", "y1")] for r in csv.DictReader(handle)]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def run_tool(
    tool: str,
    image: str,
    model: tuple[str, Sequence[str]],
    workdir: Path,
    tag: str,
    truth: NDArray[np.float64] | None,
    setting: str,
) -> ToolRun:
    """Run ``tool`` over ``image`` with the plugin ``model`` and measure it."""
    spec, params = model
    run_dir = workdir / "runs" / f"{tag}-{tool}"
    run_dir.mkdir(parents=True, exist_ok=True)
    for old in run_dir.iterdir():
        old.unlink()
    if tool == "tilerunner":
        out = run_dir / "out.csv"
        argv = [
            sys.executable,
            "-m",
            "tilerunner",
            "run",
            image,
            "--model",
            spec,
            *[a for p in params for a in ("--model-param", p)],
            "--tile-size",
            "512",
            "--overlap",
            "64",
            "-o",
            str(out),
            "--state",
            str(run_dir / "state.db"),
            "--quiet",
        ]
    else:
        out = run_dir / "out.npy"
        argv = [
            sys.executable,
            str(BENCH / "peer_tools.py"),
            tool,
            image,
            "--model",
            spec,
            *[a for p in params for a in ("--param", p)],
            "--out",
            str(out),
        ]
    env = _env()
    compile_for(env)  # as a wheel install has it, for every tool alike
    sampled = run_sampled(argv, run_dir / "run.log", env=env)
    if sampled.returncode != 0:
        raise SystemExit(f"{tool} failed ({sampled.returncode}) on {image}; see {run_dir}/run.log")
    boxes = _read_csv_boxes(out) if tool == "tilerunner" else np.load(out)[:, :4]
    details = json.loads(sampled.stdout.strip().splitlines()[-1]) if tool != "tilerunner" else {}
    score = None if truth is None else score_detections(boxes, truth).as_dict()
    return ToolRun(
        setting,
        tool,
        sampled.seconds,
        sampled.cpu_seconds,
        sampled.peak_tree_bytes,
        sampled.processes,
        len(boxes),
        score,
        details,
    )


def _model_alone(image: str, model: tuple[str, Sequence[str]], workdir: Path) -> dict[str, Any]:
    spec, params = model
    argv = [
        sys.executable,
        str(BENCH / "peer_tools.py"),
        "model",
        image,
        "--model",
        spec,
        *[a for p in params for a in ("--param", p)],
        "--out",
        str(workdir / "model.npy"),
    ]
    sampled = run_sampled(argv, workdir / "model.log", env=_env())
    if sampled.returncode != 0:
        raise SystemExit(f"the model-only run failed; see {workdir}/model.log")
    result: dict[str, Any] = json.loads(sampled.stdout.strip().splitlines()[-1])
    return result


def local_setting(
    image: Path, truth: NDArray[np.float64], workdir: Path, heavy: tuple[str, Sequence[str]]
) -> dict[str, Any]:
    alone = _model_alone(str(image), heavy, workdir)
    print(f"local: the model alone: {alone['model_s']:.1f} s over {alone['tiles']:.0f} tiles")
    runs = [run_tool(t, str(image), heavy, workdir, "local", truth, "local") for t in TOOLS]
    _print_runs(runs, alone["model_s"])
    return {"model_alone": alone, "runs": [asdict(r) for r in runs]}


def http_setting(
    image: Path, truth: NDArray[np.float64], workdir: Path, latencies: Sequence[float]
) -> dict[str, Any]:
    runs, served = [], []
    with RangeServer(image.parent) as server:
        for latency in latencies:
            server.latency_ms = latency
            for tool in TOOLS:
                server.reset()
                tag = f"http-{latency:g}ms"
                runs.append(run_tool(tool, server.url(image.name), CHEAP, workdir, tag, truth, tag))
                stats = server.stats()
                served.append(
                    {
                        "setting": tag,
                        "tool": tool,
                        "requests": stats.requests,
                        "bytes": stats.bytes_sent,
                        "max_in_flight": stats.max_in_flight,
                    }
                )
                runs[-1].details.update(served[-1])
    _print_runs(runs, None)
    return {"runs": [asdict(r) for r in runs]}


def memory_setting(sizes: Sequence[int], workdir: Path) -> dict[str, Any]:
    runs: list[ToolRun] = []
    skipped = []
    for size in sizes:
        image = make_scene(workdir / f"scene-{size}-s0.jpeg.tif", size, cog=False)
        for tool in TOOLS:
            need = 3 * size * size * 3  # SAHI and the model hold the image, plus copies
            if tool == "sahi" and psutil.virtual_memory().available < need:
                skipped.append(
                    {"tool": tool, "size": size, "reason": f"needs ~{need / 2**30:.0f} GiB free"}
                )
                continue
            runs.append(run_tool(tool, str(image), CHEAP, workdir, f"mem-{size}", None, f"{size}"))
    _print_runs(runs, None)
    return {"runs": [asdict(r) for r in runs], "skipped": skipped}


def _print_runs(runs: Sequence[ToolRun], model_s: float | None) -> None:
    print(
        f"{'setting':<12} {'tool':<11} {'seconds':>8} {'vs model':>8} {'CPU s':>7} {'peak MiB':>9} "
        f"{'boxes':>6} {'found':>6} {'dup':>5} {'part':>5} {'miss':>5}"
    )
    for r in runs:
        ratio = f"{r.seconds / model_s:8.2f}" if model_s else f"{'':>8}"
        s = r.score or {}
        print(
            f"{r.setting:<12} {r.tool:<11} {r.seconds:8.2f} {ratio} {r.cpu_seconds:7.2f} "
            f"{r.peak_tree_bytes / 2**20:9.0f} {r.boxes:6d} {s.get('found', ''):>6} "
            f"{s.get('duplicates', ''):>5} {s.get('partials', ''):>5} {s.get('missing', ''):>5}"
        )


def run_peers(
    workdir: Path,
    *,
    parts: Sequence[str],
    width: int,
    height: int,
    latencies: Sequence[float],
    sizes: Sequence[int],
    heavy_width: int,
    heavy_depth: int,
) -> dict[str, Any]:
    """Build the inputs and run the asked ``parts`` (local, http, memory); the report."""
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    image, truth = make_seam_scene(workdir, width, height)
    print(
        f"seam scene {image.name}: {len(truth)} squares across seams, "
        f"ready after {time.perf_counter() - started:.0f} s"
    )
    onnx = make_heavy_onnx(
        workdir / f"heavy-512-{heavy_width}-{heavy_depth}.onnx", 512, heavy_width, heavy_depth
    )
    heavy = ("plugins:HeavyDetector", (f"onnx={onnx}",))
    report: dict[str, Any] = {
        "scene": {"path": str(image), "width": width, "height": height, "objects": len(truth)}
    }
    load = {"before": os.getloadavg()[0]}
    if "local" in parts:
        report["local"] = local_setting(image, truth, workdir, heavy)
    if "http" in parts:
        report["http"] = http_setting(image, truth, workdir, latencies)
    if "memory" in parts:
        report["memory"] = memory_setting(sizes, workdir)
    report["load_average_1min"] = {**load, "after": os.getloadavg()[0]}
    return report

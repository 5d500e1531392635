"""Figures of the peer and scale benchmarks, drawn from their JSON results with matplotlib.

* ``peers-http.png``: seconds per tool at each added HTTP latency (and the local, compute-heavy
  run beside the model's own time);
* ``peers-memory.png``: peak RSS of each tool's process tree against image size;
* ``scale-merge.png``: tilerunner's merge time against the number of detections, with the
  ``n log n`` curve through the smallest point.

Only the figures whose results exist are drawn.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

__all__ = ["draw"]

COLOURS = {"tilerunner": "#1b9e77", "sahi": "#d95f02", "loop": "#7570b3"}


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _peers_speed(peers: dict[str, Any], out: Path) -> Path:
    settings = []
    if "local" in peers:
        settings.append("local")
    http = peers.get("http", {}).get("runs", [])
    settings += list(dict.fromkeys(r["setting"] for r in http))
    runs = peers.get("local", {}).get("runs", []) + http
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / 3
    for i, tool in enumerate(COLOURS):
        values = [
            next((r["seconds"] for r in runs if r["setting"] == s and r["tool"] == tool), 0.0)
            for s in settings
        ]
        xs = [j + (i - 1) * width for j in range(len(settings))]
        ax.bar(xs, values, width, label=tool, color=COLOURS[tool])
    if "local" in peers:
        model = peers["local"]["model_alone"]["model_s"]
        ax.hlines(model, -0.45, 0.45, colors="black", linestyles="dashed", label="model alone")
    ax.set_xticks(range(len(settings)), [s.replace("http-", "HTTP +") for s in settings])
    ax.set_ylabel("seconds, whole process (lower is better)")
    ax.set_title("Same model, pixels and tiles: 8192 x 6144 COG, 266 tiles of 512 px")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _peers_memory(peers: dict[str, Any], out: Path) -> Path:
    runs = peers["memory"]["runs"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for tool, colour in COLOURS.items():
        mine = sorted(
            (int(r["setting"]), r["peak_tree_bytes"] / 2**30) for r in runs if r["tool"] == tool
        )
        if mine:
            ax.plot([m[0] for m in mine], [m[1] for m in mine], "o-", label=tool, color=colour)
    ax.axhline(1.5, color="grey", linestyle=":", label="1.5 GB")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("image width = height, px")
    ax.set_ylabel("peak RSS of the process tree, GiB")
    ax.set_title("Peak memory by image size (cheap model)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _scale_merge(scale: dict[str, Any], out: Path) -> Path:
    merges = sorted(scale["merge"], key=lambda m: m["n"])
    ns = [m["n"] for m in merges]
    first = merges[0]
    per = first["cpu_seconds"] / (first["n"] * math.log2(first["n"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cpu = [m["cpu_seconds"] for m in merges]
    ax.plot(ns, cpu, "o-", label="measured (NMS), CPU seconds", color="#1b9e77")
    ax.plot(
        ns,
        [per * n * math.log2(n) for n in ns],
        "--",
        color="grey",
        label="n log n through the first point",
    )
    ax.set_xlabel("detections merged")
    ax.set_ylabel("CPU seconds")
    ax.set_title("tilerunner merge time against detections")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def draw(results: Path, img: Path) -> list[Path]:
    """Draw every figure whose results exist; the PNG paths written."""
    img.mkdir(parents=True, exist_ok=True)
    written = []
    peers = _load(results / "peers.json")
    scale = _load(results / "scale.json") or _load(results / "merge.json")
    if peers and ("local" in peers or "http" in peers):
        written.append(_peers_speed(peers, img / "peers-speed.png"))
    if peers and "memory" in peers:
        written.append(_peers_memory(peers, img / "peers-memory.png"))
    if scale and scale.get("merge"):
        written.append(_scale_merge(scale, img / "scale-merge.png"))
    return written

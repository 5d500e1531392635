"""Markdown tables of the peer and scale results, as ``docs/benchmarks.md`` shows them.

``suite.py plots`` prints them beside drawing the figures, so the page is filled from the JSON
that the runs wrote, never retyped.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["peers_tables", "scale_tables"]

_MIB = 2**20


def _cpu(run: dict[str, Any]) -> str:
    return f"{run.get('cpu_seconds', math.nan):.1f}"


def _score(run: dict[str, Any]) -> str:
    s = run.get("score")
    if not s:
        return "| | | | |"
    return f"| {s['found']} | {s['duplicates']} | {s['partials']} | {s['missing']} |"


def peers_tables(peers: dict[str, Any]) -> str:
    lines = []
    if "local" in peers:
        alone = peers["local"]["model_alone"]
        lines += [
            f"Model alone: {alone['model_s']:.1f} s wall, {alone.get('model_cpu_s', math.nan):.1f} "
            f"s CPU over {alone['tiles']:.0f} tiles (batches of 8, tiles read beforehand).",
            "",
            "| tool | seconds | / model alone | CPU s | peak RSS, tree | boxes | found | "
            "duplicate | partial | missing |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in peers["local"]["runs"]:
            lines.append(
                f"| {r['tool']} | {r['seconds']:.1f} | {r['seconds'] / alone['model_s']:.2f} | "
                f"{_cpu(r)} | {r['peak_tree_bytes'] / _MIB:.0f} MiB | {r['boxes']} " + _score(r)
            )
        lines.append("")
    if "http" in peers:
        lines += [
            "| latency | tool | seconds | CPU s | requests | MiB fetched | most in flight | "
            "found | duplicate | partial | missing |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in peers["http"]["runs"]:
            d = r["details"]
            lines.append(
                f"| {r['setting'].removeprefix('http-')} | {r['tool']} | {r['seconds']:.1f} | "
                f"{_cpu(r)} | {d['requests']} | {d['bytes'] / _MIB:.0f} | "
                f"{d['max_in_flight']} " + _score(r)
            )
        lines.append("")
    if "memory" in peers:
        lines += ["| image | tool | seconds | CPU s | peak RSS, tree | processes |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for r in peers["memory"]["runs"]:
            lines.append(
                f"| {r['setting']} px | {r['tool']} | {r['seconds']:.1f} | {_cpu(r)} "
                f"| {r['peak_tree_bytes'] / _MIB:.0f} MiB | {r['processes']} |"
            )
        for s in peers["memory"].get("skipped", []):
            lines.append(f"| {s['size']} px | {s['tool']} | not run: {s['reason']} | | | |")
        lines.append("")
    return "\n".join(lines)


def scale_tables(scale: dict[str, Any]) -> str:
    run = scale["run"]
    stages = run["stages"]
    lines = [
        f"{scale['size']:,} x {scale['size']:,} px, {run['tiles']:,} tiles, "
        f"{run['features']:,} features kept: {run['seconds']:.0f} s wall, "
        f"{run['cpu_seconds']:.0f} s CPU, peak RSS of the tree {run['peak_tree_bytes'] / _MIB:.0f} "
        f"MiB, {run['tiles_per_second_run_stage']:.0f} tiles/s in the run stage.",
        "",
        "| stage | " + " | ".join(stages) + " |",
        "|---|" + "---|" * len(stages),
        "| seconds | " + " | ".join(f"{v:.1f}" for v in stages.values()) + " |",
        "",
        "| detections merged | seconds | CPU s | ns per n log2 n |",
        "|---|---|---|---|",
    ]
    for m in scale["merge"]:
        per = m["seconds"] / (m["n"] * math.log2(m["n"])) * 1e9
        lines.append(f"| {m['n']:,} | {m['seconds']:.2f} | {m['cpu_seconds']:.2f} | {per:.0f} |")
    return "\n".join(lines) + "\n"

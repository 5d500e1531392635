"""Start-up benchmark: how long the ``tilerunner`` command takes to answer, and where a small
``run`` spends its time.

Times, as a user sees them (wall clock of the whole process, median of ``--repeat`` runs):

* ``help``: ``tilerunner --help``; ``run_help``: ``tilerunner run --help``;
* ``status_new``: ``tilerunner status --store sqlite:///<new file>`` (creates it at head);
* ``status_existing``: the same on a store that exists already (at the newest schema, no jobs);
* ``status_floor``: a bare interpreter importing only the libraries ``status`` cannot do
  without (click, pydantic for the settings, rich for the table), for comparison;
* ``run``: ``tilerunner run`` of the test model ``tilerunner.testing.models:TruthDetector``
  (or ``--model``) over a one-tile 512 x 512 GeoTIFF (2 boxes), each time with a new
  ``--state``;
* ``model_load``: the model's own load time, ``load_model`` alone in a process that has
  imported ``tilerunner.models`` (what ``run`` cannot go below: its worker loads it too).

Then, for ``run``, where its time goes: the same run with ``TILERUNNER_LOG_LEVEL=DEBUG`` (the
run process and its worker log with millisecond timestamps) gives a timeline from the moment
the process is started, in the order the lines were logged (the run process and its worker
overlap); one more run with ``PYTHONPROFILEIMPORTTIME=1`` (``-X importtime`` for
the run process and its worker) gives the seconds each process spends importing modules.

    .venv/bin/python bench/startup.py --repeat 10 --json bench-startup.json

``--src DIR`` measures another checkout's ``src`` folder with this virtualenv (``PYTHONPATH``),
e.g. the previous commit's, to compare before and after a change.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bytecode import compile_for

TRUTH_MODEL = "tilerunner.testing.models:TruthDetector"

#: Marks of the run's timeline: (phase ending at the mark, process, log message pattern). The
#: phases are taken in the order their lines were logged (the run and its workers overlap); a
#: checkout that does not log a mark simply has no such phase.
MARKS: list[tuple[str, str, str]] = [
    ("process start, CLI imports, settings", "run", r"run: command started"),
    ("worker processes started", "run", r"run: started \d+ worker process"),
    ("command imports, model load, checks", "run", r"run: opening the state"),
    ("state open (schema created or migrated)", "run", r"run: state open; planning"),
    ("planning (images opened, regions queued)", "run", r"run: job \S+ planned"),
    ("worker: imports, model load", "worker", r"worker: models loaded"),
    ("worker: store open, until it asks for work", "worker", r"worker: ready"),
    ("the job: regions leased, read, inferred, recorded", "run", r"run: every region finished"),
    ("aggregation (merge, georeference, write outputs)", "run", r"run: aggregated"),
    ("summary table", "run", r"run: summary printed"),
    ("workers stopped", "run", r"run: workers stopped"),
]
# wall seconds of load_model alone (its module imported first), as the run process loads it
_MODEL_LOAD = """
import sys, time
from tilerunner.cli.common import parse_params
from tilerunner.models import load_model
args = sys.argv[1:]
spec = args[args.index("--model") + 1]
params = parse_params(tuple(v for k, v in zip(args, args[1:]) if k == "--model-param"))
started = time.perf_counter()
load_model(spec, params, name="model")
print(f"model_load_s {time.perf_counter() - started:.4f}")
"""
_FLOOR = "import click, pydantic, rich.console, rich.table"
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) ([\w.]+): (.*)$")
_MIGRATED = re.compile(r"migrated the state database to head in ([\d.]+) s")
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)$")


def make_image(folder: Path) -> tuple[Path, Path]:
    """A 512 x 512 UTM GeoTIFF of seeded noise (one tile at the default tile size) and a CSV of
    two truth boxes for the TruthDetector."""
    tif, truth = folder / "one-tile.tif", folder / "truth.csv"
    if not tif.exists():
        import numpy as np
        import rasterio
        from rasterio.transform import from_origin

        pixels = np.random.default_rng(1).integers(0, 255, size=(3, 512, 512), dtype=np.uint8)
        with rasterio.open(
            tif, "w", driver="GTiff", width=512, height=512, count=3, dtype="uint8",
            crs="EPSG:32618", transform=from_origin(500000.0, 4000000.0, 0.5, 0.5),
        ) as dst:  # fmt: skip
            dst.write(pixels)
    truth.write_text("xmin,ymin,xmax,ymax,label\n10,10,50,50,a\n100,120,180,200,b\n")
    return tif, truth


def _command() -> list[str]:
    """The ``tilerunner`` console script of this interpreter, as a user runs it."""
    script = Path(sys.executable).with_name("tilerunner")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tilerunner"]


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``argv``; (wall seconds, CPU seconds of it and its children, its standard output)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def _run_argv(tif: Path, tag: str, model: list[str]) -> list[str]:
    return [
        *_command(), "run", str(tif), *model,
        "-o", f"{tag}.geojson", "--state", f"{tag}.db", "--quiet",
    ]  # fmt: skip


def measure(
    workdir: Path, tif: Path, model: list[str], repeat: int, env: dict[str, str]
) -> dict[str, Any]:
    """Wall and CPU seconds of each command, ``repeat`` times (the commands interleaved)."""
    cli = _command()
    stores = workdir / "stores"
    stores.mkdir(exist_ok=True)
    existing = f"sqlite:///{stores / 'existing.db'}"
    compile_for(env)  # bytecode written, as an install from a wheel has it
    _timed([*cli, "status", "--store", existing], workdir, env)  # create it once
    commands: dict[str, Callable[[int], list[str]]] = {
        "help": lambda i: [*cli, "--help"],
        "run_help": lambda i: [*cli, "run", "--help"],
        "status_new": lambda i: [*cli, "status", "--store", f"sqlite:///{stores / f'new-{i}.db'}"],
        "status_existing": lambda i: [*cli, "status", "--store", existing],
        # the floor of status: a bare interpreter importing only the libraries it must use
        "status_floor": lambda i: [sys.executable, "-c", _FLOOR],
        "run": lambda i: _run_argv(tif, f"runs/run-{i}", model),
        # the model's own load time, printed by a process that has imported tilerunner.models
        "model_load": lambda i: [sys.executable, "-c", _MODEL_LOAD, *model],
    }
    (workdir / "runs").mkdir(exist_ok=True)
    samples: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in commands}
    for i in range(repeat):
        for name, argv in commands.items():
            wall, cpu, out = _timed(argv(i), workdir, env)
            if name == "model_load":  # the figure that matters is the one it printed
                wall = float(out.split("model_load_s", 1)[1])
            samples[name]["wall"].append(round(wall, 4))
            samples[name]["cpu"].append(round(cpu, 4))
    return {
        name: {
            "median_wall_s": round(statistics.median(s["wall"]), 3),
            "median_cpu_s": round(statistics.median(s["cpu"]), 3),
            "wall_s": s["wall"],
            "cpu_s": s["cpu"],
        }
        for name, s in samples.items()
    }


def _log_times(text: str) -> list[tuple[float, str]]:
    found = []
    for line in text.splitlines():
        if match := _LOG_LINE.match(line):
            stamp = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            found.append((stamp.timestamp(), match.group(4)))
    return found


def timeline(
    workdir: Path, tif: Path, model: list[str], repeat: int, env: dict[str, str]
) -> dict[str, Any]:
    """Seconds of each phase of ``run`` (median over ``repeat`` runs), from the log timestamps."""
    phases: dict[str, list[float]] = {}
    migrations: list[float] = []
    totals: list[float] = []
    debug = {**env, "TILERUNNER_LOG_LEVEL": "DEBUG"}
    for i in range(repeat):
        tag = f"timeline/run-{i}"
        (workdir / "timeline").mkdir(exist_ok=True)
        argv = _run_argv(tif, tag, model)
        epoch = time.time()
        done = subprocess.run(
            argv, cwd=workdir, env=debug, capture_output=True, text=True, check=False
        )
        ended = time.time()
        if done.returncode != 0:
            raise SystemExit(f"run failed:\n{done.stderr}")
        logs = {"run": _log_times(done.stderr),
                "worker": _log_times((workdir / f"{tag}.workers.log").read_text())}  # fmt: skip
        found = sorted(
            (min(t for t, message in logs[process] if re.search(pattern, message)), name)
            for name, process, pattern in MARKS
            if any(re.search(pattern, message) for _, message in logs[process])
        )
        previous = epoch
        for stamp, name in [*found, (ended, "process exit")]:
            phases.setdefault(name, []).append(stamp - previous)
            previous = stamp
        totals.append(ended - epoch)
        migrated = [float(m.group(1)) for _, msg in logs["run"] if (m := _MIGRATED.search(msg))]
        migrations.append(sum(migrated))
    return {
        "phases_median_s": {name: round(statistics.median(v), 3) for name, v in phases.items()},
        "migrations_median_s": round(statistics.median(migrations), 3),
        "total_median_s": round(statistics.median(totals), 3),
        "note": "logging at DEBUG; phases end at the log lines named in bench/startup.py MARKS, "
        "in the order they were logged (median of each phase over the runs that logged it)",
    }


def _import_seconds(text: str) -> tuple[float, int]:
    """Seconds spent importing (top-level cumulative times of -X importtime) and modules."""
    total_us, modules = 0, 0
    for line in text.splitlines():
        if match := _IMPORT_LINE.match(line):
            modules += 1
            if not match.group(3):  # a top-level import; nested ones are inside it
                total_us += int(match.group(2))
    return total_us / 1e6, modules


def import_times(workdir: Path, tif: Path, model: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Seconds each process of one ``run`` spends importing (with importtime's own overhead)."""
    tag = "imports/run"
    (workdir / "imports").mkdir(exist_ok=True)
    for leftover in (workdir / "imports").iterdir():
        leftover.unlink()
    profiled = {**env, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(_run_argv(tif, tag, model), cwd=workdir, env=profiled,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"run failed:\n{done.stderr}")
    run_s, run_n = _import_seconds(done.stderr)
    worker_s, worker_n = _import_seconds((workdir / f"{tag}.workers.log").read_text())
    return {"run_process_s": round(run_s, 3), "run_process_modules": run_n,
            "worker_process_s": round(worker_s, 3), "worker_process_modules": worker_n}  # fmt: skip


def machine() -> dict[str, object]:
    with Path("/proc/cpuinfo").open(encoding="utf-8") as info:
        names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    return {"nproc": os.cpu_count(), "cpu": names[0] if names else platform.processor(),
            "python": platform.python_version(), "loadavg": os.getloadavg()}  # fmt: skip


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add = parser.add_argument
    add("--repeat", type=int, default=10, help="runs of each command (median reported)")
    add("--timeline-repeat", type=int, default=5, help="runs of the run's timeline")
    add("--workdir", type=Path, default=Path("/tmp/tilerunner-bench-startup"))
    add("--src", type=Path, default=None, help="measure this src folder instead (PYTHONPATH)")
    add("--json", type=Path, default=None, help="also write the figures to this file")
    add("--model", default=TRUTH_MODEL, help="the model of the run (default: the test model)")
    add("--model-param", action="append", default=[], help="key=value for --model")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _arguments(argv)
    workdir: Path = args.workdir
    if workdir.exists():
        for folder in ("stores", "runs", "timeline", "imports"):
            for path in sorted((workdir / folder).glob("*"), reverse=True):
                path.unlink()
    workdir.mkdir(parents=True, exist_ok=True)
    tif, truth = make_image(workdir)
    env = dict(os.environ)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    if args.src is not None:
        env["PYTHONPATH"] = str(args.src.resolve())
    report: dict[str, Any] = {"machine": machine(), "command": _command(),
                              "src": str(args.src) if args.src else "installed"}  # fmt: skip
    model = ["--model", args.model, *[a for p in args.model_param for a in ("--model-param", p)]]
    if args.model == TRUTH_MODEL and not args.model_param:
        model += ["--model-param", f"truth={truth}"]
    report["model"] = model[1:]
    report["commands"] = measure(workdir, tif, model, args.repeat, env)
    report["run_timeline"] = timeline(workdir, tif, model, args.timeline_repeat, env)
    report["run_imports"] = import_times(workdir, tif, model, env)
    report["machine"]["loadavg_after"] = os.getloadavg()
    print(f"{'command':<18}{'median wall s':>14}{'median cpu s':>14}")
    for name, row in report["commands"].items():
        print(f"{name:<18}{row['median_wall_s']:>14.3f}{row['median_cpu_s']:>14.3f}")
    line = report["run_timeline"]
    if "phases_median_s" in line:
        print("\nrun, where the time goes (median s, DEBUG logging):")
        for phase, seconds in line["phases_median_s"].items():
            print(f"  {phase:<52}{seconds:>7.3f}")
        print(f"  {'total':<52}{line['total_median_s']:>7.3f}")
        print(f"  of which creating or migrating the schema: {line['migrations_median_s']:.3f}")
    else:
        print(f"\nno run timeline: the {line['process']} logs no {line['missing_mark']!r}")
    imports = report["run_imports"]
    print(f"imports (-X importtime): run process {imports['run_process_s']:.3f} s "
          f"({imports['run_process_modules']} modules), worker {imports['worker_process_s']:.3f} s "
          f"({imports['worker_process_modules']} modules)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()

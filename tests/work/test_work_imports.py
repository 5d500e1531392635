"""The worker loop, its HTTP source and the pipeline import neither the store nor the broker.

A worker that pulls its work over HTTP (a SLURM job, a box behind a firewall) needs no database
driver or queue client; checked in a fresh interpreter, where nothing else was imported first.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import tilerunner.work.http, tilerunner.worker.runner, tilerunner.pipeline
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {"sqlalchemy", "alembic"}
                        or m.startswith(("tilerunner.store", "tilerunner.broker")))))
"""


def test_the_worker_side_imports_no_store_and_no_broker() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout) == []

"""Watch benchmark: what one look of ``tilerunner watch s3://...`` costs on a prefix of many keys.

An in-process moto server holds ``--keys`` small objects under one prefix. Then, median of
``--repeat`` rounds, wall seconds:

* ``list``: one listing of the prefix (:class:`tilerunner.watch.s3.S3Listing`, ListObjectsV2
  pages of 1,000 keys);
* ``record``: recording every listed object as new in a SQLite store (one transaction);
* ``steady_look``: a whole look of a watcher that has taken every object already (list the
  prefix, find nothing new, make no job): what each ``--poll-seconds`` costs from then on;
* ``steady_own``: the same look with the listing replayed from memory: the watcher's own share
  (skipping the known objects, the store's queries), without S3.

Jobs are not made (their planning would open each object, which measures the planner, not
the watch).

    .venv/bin/python bench/watch_listing.py --keys 10000 --repeat 3 --json bench-watch.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    from tilerunner.store import open_store
    from tilerunner.watch import JobTemplate, KeyFilter, Watcher
    from tilerunner.watch.s3 import S3Listing

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1")  # fmt: skip
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="bench")
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket="bench", Key=f"in/{i:07d}.tif", Body=b"x"),
                      range(args.keys)))  # fmt: skip
    print(f"put {args.keys} keys in {time.perf_counter() - started:.1f} s")

    phases = ("list", "record", "steady_look", "steady_own")
    rounds: dict[str, list[float]] = {phase: [] for phase in phases}
    with tempfile.TemporaryDirectory() as tmp:
        template_path = Path(tmp) / "t.json"
        template_path.write_text('{"pipeline": [{"task": "detect", "model": "det"}]}')
        template = JobTemplate.load(template_path)
        for n in range(args.repeat):
            store = open_store(f"sqlite:///{tmp}/state-{n}.db")
            listing = S3Listing("bench", "in/", KeyFilter(), s3)
            started = time.perf_counter()
            found = listing.discover().objects
            rounds["list"].append(time.perf_counter() - started)
            assert len(found) == args.keys, len(found)
            started = time.perf_counter()
            store.record_objects(listing.name, found)
            rounds["record"].append(time.perf_counter() - started)
            # every object is in a job already: mark them so, as a watcher that made them would
            with store.engine.begin() as conn:
                conn.exec_driver_sql("UPDATE watched_objects SET job_id = 'done'")
            watcher = Watcher(store, _no_queue, listing, template)
            started = time.perf_counter()
            look = watcher.poll()
            rounds["steady_look"].append(time.perf_counter() - started)
            assert look.recorded == 0 and look.jobs == []
            replayed = Watcher(store, _no_queue, _Replay(listing.name, found), template)
            started = time.perf_counter()
            look = replayed.poll()
            rounds["steady_own"].append(time.perf_counter() - started)
            assert look.recorded == 0 and look.jobs == []
    server.stop()
    result: dict[str, Any] = {
        "keys": args.keys,
        "repeat": args.repeat,
        "median_seconds": {k: round(statistics.median(v), 3) for k, v in rounds.items()},
        "rounds": {k: [round(x, 3) for x in v] for k, v in rounds.items()},
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


class _Replay:
    """A source that finds the same objects every look, from memory."""

    def __init__(self, name: str, objects: list[Any]) -> None:
        self.name = name
        self.objects = objects

    def discover(self) -> Any:
        from tilerunner.watch import Found

        return Found(list(self.objects))

    def acknowledge(self, receipts: Any) -> None:
        pass


def _no_queue(name: str) -> Any:
    raise AssertionError(f"a steady look publishes nothing (asked for queue {name!r})")


if __name__ == "__main__":
    main()

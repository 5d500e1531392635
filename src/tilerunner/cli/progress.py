"""Progress bar and summary table of a job, read from the store."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from tilerunner.store import Counts, Store

if TYPE_CHECKING:  # the aggregator (GDAL, merging, georeferencing) is not needed to show progress
    from tilerunner.coordinator import AggregateResult

__all__ = ["JobProgress", "print_summary"]

_console = Console(stderr=True)


class JobProgress:
    """Tiles/s, regions done of total, features found, ETA; updated from the store's counts."""

    def __init__(self, store: Store, job_id: str, *, enabled: bool = True) -> None:
        self._store = store
        self._job_id = job_id
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("regions"),
            TextColumn("{task.fields[tiles]} tiles  {task.fields[rate]} tiles/s"),
            TextColumn("{task.fields[features]} features"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=_console,
            disable=not enabled,
        )
        self._task: TaskID | None = None
        self._first: tuple[float, int] | None = None

    def __enter__(self) -> JobProgress:
        self._progress.start()
        counts = self._store.counts(self._job_id)
        self._task = self._progress.add_task(
            "running", total=counts.regions_total, completed=counts.regions_finished,
            tiles=counts.tiles_done, rate="-", features=counts.features,
        )  # fmt: skip
        return self

    def update(self) -> Counts:
        counts = self._store.counts(self._job_id)
        assert self._task is not None
        now = self._progress.get_time()
        if self._first is None:
            self._first = (now, counts.tiles_done)
        elapsed = now - self._first[0]
        rate = (counts.tiles_done - self._first[1]) / elapsed if elapsed > 0.5 else 0.0
        self._progress.update(
            self._task, completed=counts.regions_finished, tiles=counts.tiles_done,
            rate=f"{rate:,.1f}", features=counts.features,
        )  # fmt: skip
        return counts

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()


def print_summary(store: Store, job_id: str, result: AggregateResult, seconds: float) -> None:
    """The table printed after a run: images, regions, tiles, features by label, speed."""
    c = store.counts(job_id)
    table = Table(title=f"job {job_id}: {result.status.value}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("images", f"{c.images_done} done, {c.images_failed} failed of {c.images_total}")
    table.add_row(
        "regions", f"{c.regions_done} done, {c.regions_failed} failed of {c.regions_total}"
    )
    table.add_row("tiles", f"{c.tiles_done:,} of {c.tiles_total:,}")
    if result.statistics:
        table.add_row("pixels per class", "")
        for s in result.statistics:
            area = "" if s.area is None else f" ({s.area:,.1f} CRS units²)"
            table.add_row(f"  {s.label}", f"{s.pixels:,}{area}")
    else:
        table.add_row("features", f"{result.features:,}")
        for label, n in result.labels.items():
            table.add_row(f"  {label}", f"{n:,}")
    table.add_row("seconds", f"{seconds:,.1f}")
    table.add_row("tiles/s", f"{c.tiles_done / seconds:,.1f}" if seconds > 0 else "-")
    for uri in result.outputs:
        table.add_row("output", uri)
    Console().print(table)

"""Watching a local folder by polling it, taking each file once it is whole.

Polling, not inotify (or a library over it): it works the same on network file systems, in
containers and on every platform, and a file system event says when a file changed, never when
its writer finished, so the settling rule below is needed either way. Each look walks the folder
(and its subfolders) and stats every file:

- a file is taken once its size and modification time have stayed the same for
  ``settle_seconds`` between looks, or, on the first look, when it was last modified more than
  ``settle_seconds`` ago (files that were there before the watch started);
- names that writers use while a file is incomplete are never taken: hidden names (``.name``,
  as ``rsync`` and many uploaders write before renaming into place) and the suffixes in
  :data:`PARTIAL_SUFFIXES`. Writing under such a name and renaming into place is the safe way
  to deliver a file; the settling rule covers writers that cannot.

A file's version is its size and modification time (ns): a file rewritten later is a new object.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tilerunner.store.watched import WatchedObject
from tilerunner.watch.sources import Found, KeyFilter

__all__ = ["PARTIAL_SUFFIXES", "DirectoryScan"]

PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".swp", "~")


@dataclass(frozen=True, slots=True)
class _Look:
    size: int
    mtime_ns: int
    since: float
    """When the file was first seen with this size and time."""


class DirectoryScan:
    """Looks at a folder and reports the files that settled (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        keys: KeyFilter,
        *,
        settle_seconds: float = 2.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.root = root.resolve()
        self.keys = keys
        self.settle_seconds = settle_seconds
        self.clock = clock or time.time
        self.name = str(self.root)
        self._looks: dict[str, _Look] = {}

    def discover(self) -> Found:
        now = self.clock()
        ready: list[WatchedObject] = []
        settling: dict[str, _Look] = {}
        for path, relative in self._files():
            try:
                stat = path.stat()
            except FileNotFoundError:  # renamed or removed since the walk
                continue
            size, mtime_ns = stat.st_size, stat.st_mtime_ns
            before = self._looks.get(relative)
            if before is not None and (before.size, before.mtime_ns) == (size, mtime_ns):
                settled = now - before.since >= self.settle_seconds
                look = before
            else:
                settled = before is None and now - mtime_ns / 1e9 >= self.settle_seconds
                look = _Look(size, mtime_ns, now)
            if settled:
                ready.append(WatchedObject(relative, f"{size}-{mtime_ns}", str(path), size))
            else:
                settling[relative] = look
        self._looks = settling
        return Found(ready, more=bool(settling))

    def acknowledge(self, receipts: Sequence[str]) -> None:
        """Nothing to acknowledge: the store's record is the checkpoint."""

    def _files(self) -> Iterator[tuple[Path, str]]:
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            base = Path(folder)
            for name in sorted(files):
                if name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES):
                    continue
                relative = (base / name).relative_to(self.root).as_posix()
                if self.keys.accepts(relative):
                    yield base / name, relative

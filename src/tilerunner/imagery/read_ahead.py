"""Windows of one raster read before anyone asks for them, within a byte budget.

A ``tilerunner run`` spends its first second importing its libraries, opening its state and
planning the job, all of it in one thread holding Python's lock, while the machine's other
cores and the image's first bytes wait. Decoding a block of a COG releases that lock, so the
windows a worker will ask for first (the first strips of the first regions) can be fetched and
decoded in that second instead of after it. :class:`ReadAhead` does this for one reader: a
thread reads the given windows in order, as long as their pixels fit ``budget_bytes``, and
:meth:`take` hands a window over once (waiting for it when its read is still running). A window
asked for before its read started is left to the caller (which reads it beside this thread
rather than waiting behind the windows before it); a window whose read failed is given up here
and read again by its caller, with the caller's own tries and errors. So what a caller
gets is exactly what its own read would have returned.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np
from numpy.typing import NDArray

from tilerunner.tiling.window import Window

__all__ = ["ReadAhead"]

log = logging.getLogger(__name__)


class ReadAhead:
    """Reads ``windows`` with ``read`` in a thread of its own; :meth:`take` hands each over once.

    Only the leading windows whose pixels (``bytes_per_pixel`` each) fit ``budget_bytes``
    together are read; what was read and not yet taken is all this holds, so its memory never
    exceeds the budget. :meth:`close` stops after the read in progress and drops the rest.
    """

    def __init__(
        self,
        read: Callable[[Window], NDArray[np.uint8]],
        windows: Sequence[Window],
        budget_bytes: int,
        bytes_per_pixel: int,
    ) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._pending: dict[Window, Future[NDArray[np.uint8]]] = {}
        used = 0
        for window in dict.fromkeys(windows):  # in order, each once
            used += window.width * window.height * bytes_per_pixel
            if used > budget_bytes:
                break
            self._pending[window] = Future()
        self._order = list(self._pending.items())
        self.windows = tuple(self._pending)
        """The windows this reads ahead, in order."""
        self.asked = 0
        """Windows read ahead that were asked for so far (handed over or not)."""
        self.taken = 0
        """Windows handed over so far."""
        self._thread = threading.Thread(target=self._run, name="read-ahead", daemon=True)
        if self._pending:
            self._thread.start()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (it may still be waiting for the read in progress)."""
        return self._stopped.is_set()

    def take(self, window: Window) -> NDArray[np.uint8] | None:
        """The pixels of ``window`` if it is read ahead (waiting for its read when it is in
        progress), once; None when it is not, its read has not started (it never will: the
        caller reads it, beside this thread) or its read failed (the caller reads it again)."""
        with self._lock:
            future = self._pending.pop(window, None)
            if future is not None:
                self.asked += 1
        if future is None or future.cancel():
            return None
        try:
            pixels = future.result()
        except Exception as error:  # the caller reads it again, with its own tries and errors
            log.debug("read ahead of %s failed (%s); read again when asked", window, error)
            return None
        with self._lock:
            self.taken += 1
        return pixels

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every window is read (or skipped); False when ``timeout`` ran out."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Stop after the read in progress; drop what was read and not taken."""
        self._stopped.set()
        with self._lock:
            self._pending = {}
            asked, taken = self.asked, self.taken
        log.debug(
            "read ahead %d window(s); %d asked for, %d taken", len(self.windows), asked, taken
        )
        for _, future in self._order:  # a taken one not yet read too: its taker gets None
            future.cancel()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        for window, future in self._order:
            if self._stopped.is_set():
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._read(window))
            except BaseException as error:  # handed to take(), which lets the caller read again
                future.set_exception(error)

"""One background thread for slow GUI work (file reads, segmentation), newest job first.

The GUI thread must never wait on HDF5 reads or image analysis. :class:`Worker` runs such
jobs on its own thread, one at a time; a job submitted under a key replaces a job of the
same key that has not started yet (only the newest view of a curve or an image matters).
Results (or the exception) come back through :attr:`Worker.done`, a queued signal, so the
receiving slot runs on the GUI thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any

from PyQt5.QtCore import QObject, pyqtSignal

__all__ = ["Worker"]

logger = logging.getLogger(__name__)


class Worker(QObject):
    """A background thread running keyed jobs; results arrive as ``done(key, result)``.

    Args:
        name: the thread's name (shows in debuggers and thread dumps).
    """

    #: (key, result); result is the exception if the job raised one.
    done = pyqtSignal(object, object)

    def __init__(self, name: str) -> None:
        """Start the thread (it waits for jobs)."""
        super().__init__()
        self._cond = threading.Condition()
        self._jobs: dict[Hashable, Callable[[], Any]] = {}
        self._stopped = False
        self.busy = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, key: Hashable, job: Callable[[], Any]) -> None:
        """Run ``job`` in the background (replacing a pending job of the same key)."""
        with self._cond:
            self._jobs.pop(key, None)
            self._jobs[key] = job
            self._cond.notify()

    def idle(self) -> bool:
        """Tell whether no job is pending or running."""
        with self._cond:
            return not self._jobs and not self.busy

    def stop(self, timeout_s: float = 5.0) -> None:
        """Drop pending jobs and end the thread after the running one."""
        with self._cond:
            self._stopped = True
            self._jobs.clear()
            self._cond.notify()
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                key = next(iter(self._jobs))
                job = self._jobs.pop(key)
                self.busy = True
            try:
                result = job()
            except Exception as exc:  # shown by the receiver, never a crash
                logger.warning("background job %r failed: %s", key, exc)
                result = exc
            with self._cond:
                self.busy = False
            self.done.emit(key, result)

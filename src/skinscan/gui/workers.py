"""Work off the UI thread: `Task`, a QRunnable that runs one function and reports back by signal, and
`TaskRunner`, the window's queue of them on its own QThreadPool.

A task's signals object is created on the UI thread, so its signals reach slots of UI-thread QObjects queued,
on the UI thread; they are connected to bound methods of the runner (not lambdas), which Qt can queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from skinscan.core.errors import SkinscanError
from skinscan.gui.backends import describe_error

log = logging.getLogger(__name__)


class TaskSignals(QObject):
    succeeded = Signal(object, object)  # key, value
    failed = Signal(object, str)  # key, message for the user


class Task(QRunnable):
    """Runs `function()`; emits `signals.succeeded(key, value)` or `signals.failed(key, message)`. Never raises."""

    def __init__(self, key: Any, function: Callable[[], Any]) -> None:
        super().__init__()
        self.key = key
        self.function = function
        self.signals = TaskSignals()
        # the pool must not delete the C++ runnable while Python still holds it to keep `signals` alive
        self.setAutoDelete(False)

    def run(self) -> None:
        try:
            value = self.function()
        except Exception as exc:  # a worker must report every failure, not die with it
            if not isinstance(exc, SkinscanError | OSError):
                log.exception("task %r failed", self.key)
            self.signals.failed.emit(self.key, describe_error(exc))
        else:
            self.signals.succeeded.emit(self.key, value)


class TaskRunner(QObject):
    """Runs functions one at a time in a background thread and reports each on the UI thread.

    One worker thread: the model loads before the first prediction runs, and the engine judges one image at a
    time anyway. `succeeded(key, value)` and `failed(key, message)` are emitted on the UI thread.
    """

    succeeded = Signal(object, object)
    failed = Signal(object, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self._tasks: dict[Any, Task] = {}  # queued or running, kept alive until their signal is handled

    def submit(self, key: Any, function: Callable[[], Any]) -> None:
        """Queue `function`; its outcome comes back under `key` (unique among the queued ones)."""
        task = Task(key, function)
        task.signals.succeeded.connect(self._on_succeeded)
        task.signals.failed.connect(self._on_failed)
        self._tasks[key] = task
        self.pool.start(task)

    @property
    def busy(self) -> bool:
        """Whether work is queued or running, or its outcome not yet handled."""
        return bool(self._tasks)

    @Slot(object, object)
    def _on_succeeded(self, key: Any, value: Any) -> None:
        if self._tasks.pop(key, None) is not None:
            self.succeeded.emit(key, value)

    @Slot(object, str)
    def _on_failed(self, key: Any, message: str) -> None:
        if self._tasks.pop(key, None) is not None:
            self.failed.emit(key, message)

    def shutdown(self) -> None:
        """Drop queued work and wait for the running task, so that no thread outlives the window."""
        self.pool.clear()
        self.pool.waitForDone()  # also ends the pool's idle threads
        self._tasks.clear()

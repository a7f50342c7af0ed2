"""Work off the UI thread: `Task`, a QRunnable that runs one function and reports back by signal,
`TaskRunner`, the window's queue of them on its own QThreadPool, `ServerWatch`, the periodic health check of
a remote server, and `UpdateCheck`, the occasional question whether a newer model is on offer.

A task's signals object is created on the UI thread, so its signals reach slots of UI-thread QObjects queued,
on the UI thread; they are connected to bound methods of the runner (not lambdas), which Qt can queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal, Slot

from skinscan.core.errors import SkinscanError
from skinscan.gui.backends import ApiKeyError, Backend, ServerUnreachableError, describe_error
from skinscan.gui.state import AppState, Event

HEALTH_INTERVAL_S = 5.0
UPDATE_INTERVAL_S = 6 * 3600.0  # a new model is a rare event; once per connection and a few times a day is plenty

log = logging.getLogger(__name__)


class TaskSignals(QObject):
    succeeded = Signal(object, object)  # key, value
    failed = Signal(object, str, object)  # key, message for the user, the exception (what kind of failure)


class Task(QRunnable):
    """Runs `function()`; emits `signals.succeeded(key, value)` or `signals.failed(key, message, error)`.
    Never raises."""

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
            # without its traceback: the frames would keep the image's bytes alive until the UI thread gets to it
            self.signals.failed.emit(self.key, describe_error(exc), exc.with_traceback(None))
        else:
            self.signals.succeeded.emit(self.key, value)


class TaskRunner(QObject):
    """Runs functions one at a time in a background thread and reports each on the UI thread.

    One worker thread: the model loads before the first prediction runs, and the engine judges one image at a
    time anyway. `succeeded(key, value)` and `failed(key, message, error)` are emitted on the UI thread.
    """

    succeeded = Signal(object, object)
    failed = Signal(object, str, object)

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

    @Slot(object, str, object)
    def _on_failed(self, key: Any, message: str, error: Any) -> None:
        if self._tasks.pop(key, None) is not None:
            self.failed.emit(key, message, error)

    def shutdown(self) -> None:
        """Drop queued work and wait for the running task, so that no thread outlives the window."""
        self.pool.clear()
        self.pool.waitForDone()  # also ends the pool's idle threads
        self._tasks.clear()


class ServerWatch(QObject):
    """Checks the connected server's health every `interval_s` while `state.server_watched`, and tells the state:
    gone (`server_lost`), back (`server_answered`) or refusing the key (`key_refused`).

    The checks run on a thread of their own, so they neither wait behind a queue of images nor hold one up, and
    one at a time: while a check waits for its (short) timeout, the next is skipped.
    """

    def __init__(self, state: AppState, interval_s: float = HEALTH_INTERVAL_S, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.backend: Backend | None = None
        self.generation = 0
        self.runner = TaskRunner(self)
        self.runner.succeeded.connect(self._answered)
        self.runner.failed.connect(self._failed)
        self.timer = QTimer(self)
        self.timer.setInterval(max(1, round(interval_s * 1000)))
        self.timer.timeout.connect(self.check_now)
        state.subscribe(Event.STATUS, self._follow)

    def watch(self, backend: Backend, generation: int) -> None:
        """Check `backend` from now on; answers about an older connection's backend are ignored."""
        self.backend, self.generation = backend, generation
        self._follow()

    def _follow(self) -> None:
        if not self.state.server_watched:
            self.timer.stop()
        elif not self.timer.isActive():
            self.timer.start()

    @Slot()  # a real slot: connected without a PyQt proxy object
    def check_now(self) -> None:
        if self.backend is None or self.runner.busy:
            return
        self.runner.submit(self.generation, self.backend.check)

    @Slot(object, object)
    def _answered(self, generation: Any, name: Any) -> None:
        if generation == self.generation:
            self.state.server_answered(str(name))

    @Slot(object, str, object)
    def _failed(self, generation: Any, message: str, error: Any) -> None:
        if generation != self.generation:
            return
        if isinstance(error, ApiKeyError):  # not from a skinscan server (its /health wants no key): say so anyway
            self.state.key_refused(sent=error.sent)
        else:  # not answering, or answering that it cannot judge now (its model failed, or loads after a restart)
            self.state.server_lost(None if isinstance(error, ServerUnreachableError) else message)

    def shutdown(self) -> None:
        self.timer.stop()
        self.runner.shutdown()


class UpdateCheck(QObject):
    """Asks, on a thread of its own, whether a newer model than this computer's is on offer (`job`, see
    gui/updates.py), once when a connection is made and then every `interval_s`; a notice goes to the state
    (`offer_update`). No answer, or any failure, says nothing: the window keeps working as it was.
    """

    def __init__(self, state: AppState, interval_s: float = UPDATE_INTERVAL_S, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.job: Callable[[], Any] | None = None
        self.generation = 0
        self.checks_done = 0  # how many checks have come back, found or not (what a test waits for)
        self.runner = TaskRunner(self)
        self.runner.succeeded.connect(self._answered)
        self.runner.failed.connect(self._failed)
        self.timer = QTimer(self)
        self.timer.setInterval(max(1, round(interval_s * 1000)))
        self.timer.timeout.connect(self.check_now)

    def watch(self, job: Callable[[], Any] | None, generation: int) -> None:
        """Check with `job` (returns an UpdateNotice or None) from now on; None stops checking. Answers about an
        older connection are ignored."""
        self.job, self.generation = job, generation
        if job is None:
            self.timer.stop()
            return
        self.timer.start()
        self.check_now()

    @Slot()
    def check_now(self) -> None:
        if self.job is None or self.runner.busy:
            return
        self.runner.submit(self.generation, self.job)

    @Slot(object, object)
    def _answered(self, generation: Any, notice: Any) -> None:
        self.checks_done += 1
        if generation == self.generation and notice is not None:
            self.state.offer_update(notice)

    @Slot(object, str, object)
    def _failed(self, generation: Any, message: str, error: Any) -> None:
        self.checks_done += 1
        log.debug("update check failed: %s", message)  # find_update fails quietly; this would be a bug, logged

    def shutdown(self) -> None:
        self.timer.stop()
        self.runner.shutdown()

"""Work off the UI thread: a QRunnable that runs one function on a QThreadPool and reports back by signal.

The signals object is created on the UI thread, so its signals reach slots of UI-thread objects queued, on
the UI thread; connect them to bound methods of QObjects (not lambdas), which Qt can queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, QRunnable, Signal

from skinscan.errors import SkinscanError
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

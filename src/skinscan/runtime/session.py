"""Importing ONNX Runtime with its usage telemetry off.

ONNX Runtime 1.32 on Linux keeps a telemetry store in the user's home (~/.cache/Microsoft/DeveloperTools/
.onnxruntime/: a device id and a database, an event per process) unless ORT_DISABLE_TELEMETRY is set when it is
first imported. A medical tool records nothing about its use unless asked, so every skinscan import of ONNX Runtime
goes through here. Setting ORT_DISABLE_TELEMETRY=0 yourself turns it back on.
"""

from __future__ import annotations

import os
from types import ModuleType


def import_onnxruntime() -> ModuleType:
    """The onnxruntime module, imported (for the first time in this process) with telemetry disabled."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    return onnxruntime

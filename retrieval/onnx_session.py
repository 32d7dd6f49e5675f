"""ONNX Runtime sessions for the QA service's two models (question encoder and reader) on the CPU.

ONNX Runtime's intra-op threads spin for a while after each run, waiting for more work. The
service runs two sessions, and shares the CPU with Rasa and the action server: the encoder's
spinning threads took the cores the reader was about to use. With spinning off, a knowledge-base
question is read in 55 ms instead of 88 ms on 2 cores (bench/README.md, issue 15).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def cpu_session(path: Path, threads: int | None) -> Any:
    """An InferenceSession on the CPU with `threads` intra-op threads (None: ONNX Runtime's default)
    that do not spin between runs."""
    import onnxruntime  # only the ONNX backends need it

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

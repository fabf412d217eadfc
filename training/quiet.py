"""TensorFlow's import without its C++ start-up log on the user's terminal."""

from __future__ import annotations

import os
import sys


def import_tensorflow() -> None:
    """Import TensorFlow and Keras with file descriptor 2 pointed at the null
    device: TensorFlow 2.21 writes its start-up log (absl's "All log messages
    before absl::InitializeLog()", oneDNN, CPU instructions) straight to the
    process's stderr while it loads, whatever ``TF_CPP_MIN_LOG_LEVEL`` says.
    ``TF_CPP_MIN_LOG_LEVEL=3`` (unless the user set it) keeps its later C++
    log lines back; its errors reach Python as exceptions.  An import error is
    raised as usual, after stderr is back."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)

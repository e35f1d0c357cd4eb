"""Import Keras without TensorFlow's start-up log lines, none of which a user has to act on.

On a machine without an NVIDIA driver, TensorFlow's C++ code logs that it found no CUDA
driver and, as an error, that CUDA failed to start; with deterministic ops (train.py turns
them on) it also logs a harmless error from its own tf.data rewrite ("NodeDef mentions
attribute use_unbounded_threadpool"). TF_CPP_MIN_LOG_LEVEL is TensorFlow's switch for these:
3 hides its errors too, so it is set to 3 only where there is no NVIDIA driver, and 2 (no
info or warnings) elsewhere, where a CUDA error explains why a GPU goes unused. Set it
yourself to override (0 shows everything).

The lines TensorFlow logs while it loads ignore that switch (tensorflow/tensorflow#100442):
its informational lines, and absl's warning that logging is not set up yet. Those, and only
those, are dropped from what the import writes to stderr; any other line is passed on.
"""
import ctypes
import importlib.util
import os
import re
import tempfile

LOADING_NOTES = re.compile(rb"I\d{4} .*|WARNING: All log messages before absl::InitializeLog\(\) is called "
                           rb"are written to STDERR")


def import_keras():
    """Import Keras and its backend (and TensorFlow, where installed), keeping TensorFlow's start-up
    notes off stderr."""
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2" if has_nvidia_driver() else "3"
    with tempfile.TemporaryFile() as captured:
        stderr = os.dup(2)
        os.dup2(captured.fileno(), 2)  # C++ code writes to the file descriptor, not to sys.stderr
        try:
            import keras  # noqa: F401
            if importlib.util.find_spec("tensorflow"):  # Keras seeds TensorFlow on every backend: it loads now
                import tensorflow  # noqa: F401
        finally:
            os.dup2(stderr, 2)
            os.close(stderr)
            captured.seek(0)
            for line in captured:
                if not LOADING_NOTES.fullmatch(line.rstrip(b"\n")):
                    os.write(2, line)


def has_nvidia_driver():
    """Whether the NVIDIA driver's CUDA library loads, as TensorFlow's GPU support will try."""
    for library in ("libcuda.so.1", "nvcuda.dll"):
        try:
            ctypes.CDLL(library)
            return True
        except OSError:
            pass
    return False

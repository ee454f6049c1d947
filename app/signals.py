"""SIGINT and SIGTERM belong to Python's handlers (uvicorn's shutdown, the drain's readiness flip).

Paddle installs C-level handlers of its own when it is imported and again when a predictor is
created; they print a C++ trace and re-raise the signal, so SIGTERM would kill the server outright
instead of draining it (and as PID 1 in a container, be ignored until SIGKILL). Python's handlers
stay registered in Python's table, and `signal.signal` installs them again at the C level: this is
done after anything that may have created a predictor in this process.
"""

from __future__ import annotations

import signal
import threading


def restore_signal_handlers() -> None:
    """Reinstall Python's SIGINT and SIGTERM handlers; only the main thread may, and a host that
    runs the app off its main thread (an embedding, a test portal) owns its signals itself."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler is not None:
            signal.signal(signum, handler)

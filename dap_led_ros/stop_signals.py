"""SIGINT/SIGTERM as a stop flag, for the long-running commands (the nodes, bag replay).

Python's default SIGINT handler (and rclpy's) raises KeyboardInterrupt wherever the main thread
happens to be. Inside a finaliser it is swallowed ("Exception ignored in ...") and the program
goes on half-stopped. Here a signal sets `requested`, which the program's loop checks.
"""
from __future__ import annotations

import signal
import threading
from typing import Any


class StopSignals:
    """Handlers for SIGINT and SIGTERM between `install()` and `restore()` (or as a `with` block).

    `interrupt=True` also raises KeyboardInterrupt, for phases where stopping at once is safe
    (e.g. while a model loads); the owner clears it when its loop starts checking `requested`.
    Python lets only the main thread set handlers: elsewhere this does nothing and the embedding
    program stops the work its own way.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, interrupt: bool = False) -> None:
        self.requested = threading.Event()
        self.interrupt = interrupt
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.requested.set()
        if self.interrupt:
            raise KeyboardInterrupt

    def __enter__(self) -> StopSignals:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

"""Publishing into a node whose best-effort input may match a moment after our publisher does."""
from __future__ import annotations

import time
from collections.abc import Callable

from conftest import RosHarness


def publish_until(ros: RosHarness, publish: Callable[[], object], done: Callable[[], bool],
                  what: str, timeout: float = 30.0, period: float = 1.0) -> None:
    """Call publish() every `period` s, spinning in between, until done() (AssertionError after
    `timeout` s). Resending covers the first frames a just-matched subscription can miss."""
    end = time.monotonic() + timeout
    while not done():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        publish()
        try:
            ros.spin_until(done, min(period, max(0.0, end - time.monotonic())), what)
        except AssertionError:
            pass

"""Node log lines that stay useful under hostile input.

Frames carry strings nobody checked (encodings, frame_ids) and exception texts quote them, so:
- every line is escaped: a character that is not printable (newline, carriage return, escape
  sequences, bidi controls...) is written as \\n, \\r, \\t, \\xNN or \\uNNNN, so one message is
  always one line and cannot forge another (`[INFO] ...`);
- every line is cut to `MAX_LINE_CHARS` characters plus "...(N more)";
- `ThrottledLog` keys its throttling by the kind of a message (its text with numbers masked and
  quoted values cut off, or a key from the caller), not by its text: frames that differ only in
  their values share one line per period, and the next line of a kind tells how many were
  suppressed. Its table of kinds is bounded (new kinds beyond it share one key).
"""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

MAX_LINE_CHARS = 400
ERROR_LOG_PERIOD_S = 5.0
MAX_KINDS = 64
OVERFLOW_KIND = "(other kinds)"
_KIND_CHARS = 80

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe_line(text: Any, limit: int = MAX_LINE_CHARS) -> str:
    """`text` as one printable line of at most `limit` characters (+ "...(N more)")."""
    text = str(text)
    if len(text) <= limit and text.isprintable():
        return text
    out: list[str] = []
    used = 0
    for i, ch in enumerate(text):
        piece = ch if ch.isprintable() else _escape_char(ch)
        if used + len(piece) > limit:
            return "".join(out) + f"...({len(text) - i} more)"
        out.append(piece)
        used += len(piece)
    return "".join(out)


def message_kind(text: str) -> str:
    """A stable key for the kind of a message: the text before any quoted value, numbers masked."""
    head = re.split(r"['\"`]", text, maxsplit=1)[0]
    return re.sub(r"\d+", "#", head)[:_KIND_CHARS]


def exception_kind(exc: BaseException) -> str:
    """Throttling key of an exception: its class and the kind of its message."""
    return f"{type(exc).__name__}|{message_kind(str(exc))}"


class SafeLogger:
    """Wraps an rclpy logger: every line escaped and cut (see the module docstring)."""

    def __init__(self, logger: Any, limit: int = MAX_LINE_CHARS) -> None:
        self._logger = logger
        self._limit = limit

    # One call site per severity: rclpy keys a logger's per-caller context (which must keep its
    # severity) by the calling line.
    def debug(self, message: Any, **kwargs: Any) -> Any:
        return self._logger.debug(safe_line(message, self._limit), **kwargs)

    def info(self, message: Any, **kwargs: Any) -> Any:
        return self._logger.info(safe_line(message, self._limit), **kwargs)

    def warning(self, message: Any, **kwargs: Any) -> Any:
        return self._logger.warning(safe_line(message, self._limit), **kwargs)

    warn = warning

    def error(self, message: Any, **kwargs: Any) -> Any:
        return self._logger.error(safe_line(message, self._limit), **kwargs)

    def fatal(self, message: Any, **kwargs: Any) -> Any:
        return self._logger.fatal(safe_line(message, self._limit), **kwargs)

    def get_child(self, name: str) -> SafeLogger:
        return SafeLogger(self._logger.get_child(name), self._limit)

    def __getattr__(self, name: str) -> Any:  # levels, name... of the wrapped logger
        return getattr(self._logger, name)


class ThrottledLog:
    """At most one line per kind of message per period; the next line of a kind counts the
    lines suppressed since the last one. `suppressed` is the total (for diagnostics)."""

    def __init__(self, log: Callable[[str], Any], period_s: float = ERROR_LOG_PERIOD_S,
                 max_kinds: int = MAX_KINDS, limit: int = MAX_LINE_CHARS) -> None:
        self._log = log
        self._period_s = period_s
        self._max_kinds = max_kinds
        self._limit = limit
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}  # kind -> (last logged, suppressed since)
        self.suppressed = 0

    def __call__(self, message: str, key: str | None = None) -> bool:
        """Log `message` unless its kind (`key`, default: derived from the text) was logged
        less than a period ago; whether it was logged."""
        kind = message_kind(message) if key is None else key
        now = time.monotonic()
        with self._lock:
            if kind not in self._last and len(self._last) >= self._max_kinds:
                kind = OVERFLOW_KIND
            last, skipped = self._last.get(kind, (None, 0))
            if last is not None and now - last < self._period_s:
                self._last[kind] = (last, skipped + 1)
                self.suppressed += 1
                return False
            self._last[kind] = (now, 0)
        suffix = (f" ({skipped} similar line{'s' if skipped != 1 else ''} suppressed in the last "
                  f"{now - last:.0f} s)") if skipped and last is not None else ""
        self._log(safe_line(message, self._limit - len(suffix)) + suffix)
        return True

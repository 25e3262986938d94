"""The errors the bag tools raise for bad input or a write that failed."""
from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import zstandard


class BagError(Exception):
    """A bag cannot be read or written as asked; the message says why."""


class BagWriteError(BagError):
    """The output could not be written (disk full, file too large, I/O error); `cause` says why.

    Nothing is wrong with the input: the commands report it apart from bad input (its own exit status).
    """

    def __init__(self, cause: str) -> None:
        super().__init__(f"cannot write the output bag: {cause}")
        self.cause = cause


def write_failure_cause(exc: BaseException) -> str:
    """A short reason for a failed write: 'File too large (EFBIG)', 'database or disk is full (SQLITE_FULL)'."""
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc} ({name}){where}"
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorname", "")
        return f"{exc} ({code})" if code else str(exc)
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def storage_writes() -> Iterator[None]:
    """A failed write (disk full, file too large, I/O error) becomes BagWriteError with its cause."""
    try:
        yield
    except (OSError, sqlite3.OperationalError, zstandard.ZstdError) as exc:
        raise BagWriteError(write_failure_cause(exc)) from exc

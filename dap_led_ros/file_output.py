"""Writing output files so that they appear complete or not at all.

Every command writes its files through here: the content goes to a hidden temporary name in the
same folder (`.<stem>.part-<pid>-<random><suffix>`, the suffix kept for writers that pick the
format from it), is flushed to disk and renamed over the final name. Any failure, Ctrl-C
included, removes the temporary file, and an existing file is replaced only with `force`.
The rename replaces a directory entry, never writes through it: a symbolic link at the output
path is replaced, not the file it points to.
"""
from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

_TEMP_MARK = ".part-"
# Hard links cannot be made here: commit by checking, then renaming.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS, errno.EACCES}


class OutputError(OSError):
    """An output cannot or may not be written; the message says why and what to do."""


class OutputExistsError(OutputError, FileExistsError):
    def __init__(self, path: str | Path) -> None:
        super().__init__(f"{path} exists; pass --force to replace it")
        self.path = Path(path)


def os_error_text(exc: OSError) -> str:
    """The cause of an OSError in words, without the errno tuple ('File too large')."""
    if isinstance(exc, OutputError) or not exc.strerror:
        return str(exc)
    return exc.strerror


def is_temporary(path: str | Path) -> bool:
    """Whether `path` is the name of a temporary file written here (left behind only by a kill)."""
    name = Path(path).name
    return name.startswith(".") and _TEMP_MARK in name


def temporary_name(path: Path) -> Path:
    stem = path.stem[:150]  # room for the mark within the 255-byte name limit
    return path.with_name(f".{stem}{_TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


def prepare_folder(folder: str | Path, what: str = "output folder") -> Path:
    """Create `folder` (and its parents) and check that a file can be created in it; OutputError if not."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot use {what} {folder}: it exists and is not a folder") from None
    except OSError as exc:
        raise OutputError(f"cannot create {what} {folder}: {os_error_text(exc)}") from None
    probe = temporary_name(folder / "write-test")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write to {what} {folder}: {os_error_text(exc)}") from None
    return folder


def check_new_output(path: str | Path, force: bool) -> None:
    """OutputError unless `path` may be written: absent, or an existing file (not folder) with `force`."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise OutputError(f"{path} is a folder; give a file name")
    if os.path.lexists(path) and not force:
        raise OutputExistsError(path)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same resolved path, or one inode (hard links)."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except OSError:
        pass


def move_into_place(tmp: Path, path: Path, force: bool) -> None:
    """Flush the finished file `tmp` to disk and rename it to `path` (same folder); without `force`
    an existing `path` is an OutputExistsError, checked atomically where hard links work."""
    _fsync(tmp)
    if force:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)  # fails if `path` exists, with no window between check and rename
        except FileExistsError:
            raise OutputExistsError(path) from None
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            if os.path.lexists(path):
                raise OutputExistsError(path) from None
            os.replace(tmp, path)
        else:
            _remove(tmp)
    try:
        _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        pass  # some filesystems refuse to sync a folder; the rename itself is done


@contextmanager
def atomic_output(path: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write the file at; it becomes `path` when the block
    completes. An exception (KeyboardInterrupt included) removes it and leaves `path` as it was."""
    path = Path(path)
    check_new_output(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        move_into_place(tmp, path, force)
    except BaseException:
        _remove(tmp)
        raise


def write_bytes(path: str | Path, data: bytes, force: bool = False) -> Path:
    """Write `data` to `path` atomically (see the module docstring)."""
    path = Path(path)
    with atomic_output(path, force) as tmp, open(tmp, "xb") as f:
        f.write(data)
    return path


def write_text(path: str | Path, text: str, force: bool = False) -> Path:
    return write_bytes(path, text.encode("utf-8"), force)


@contextmanager
def temporary_folder(beside: str | Path) -> Iterator[Path]:
    """A hidden work folder beside `beside` (same filesystem, so its files can be moved into
    place with `move_into_place`); removed with whatever is left in it when the block ends."""
    beside = Path(beside)
    work = temporary_name(beside.with_suffix(""))
    work.mkdir()
    try:
        yield work
    finally:
        _remove(work)


def existing(paths: Iterable[str | Path]) -> list[Path]:
    return [Path(p) for p in paths if os.path.lexists(p)]

"""Where a bag command may write, and writing there atomically.

The rules: an input is never deleted, moved or modified (OUT may not be IN, lie inside it or
contain it, symlinks resolved); an existing OUT is replaced only with `force` and only when it
is a rosbag2 bag folder holding nothing but its own files; a new OUT appears only complete.
"""
from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath

from dap_led_ros.bag.bag_errors import BagError, storage_writes
from dap_led_ros.bag.bag_metadata import parse_metadata

log = logging.getLogger(__name__)

_PARTIAL = ".partial-"    # hidden work folder beside OUT: .<OUT name>.partial-<pid>
_REPLACED = ".replaced-"  # an old OUT moved aside while the new one takes its place


def _resolved(p: Path) -> Path:
    try:
        return p.resolve()
    except (OSError, RuntimeError):  # a symbolic link loop (RuntimeError before 3.13) leads nowhere
        return p.absolute()


def input_paths(src: Path) -> list[Path]:
    """IN and every file it consists of, symlinks resolved."""
    paths = [_resolved(src)]
    if src.is_dir():
        paths += [_resolved(p) for p in src.rglob("*")]
    return paths


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def not_a_bag_folder(path: Path) -> str | None:
    """None when `path` is a rosbag2 folder that holds only its own files, else what it is."""
    meta = path / "metadata.yaml"
    try:
        files = {PurePath(p).name for p in parse_metadata(meta.read_bytes()).relative_file_paths}
    except OSError as exc:
        return f"it has no readable rosbag2 metadata.yaml ({type(exc).__name__})"
    except BagError as exc:
        return f"it has no readable rosbag2 metadata.yaml ({exc})"
    other = sorted(p.name for p in path.iterdir() if p.name != "metadata.yaml" and p.name not in files)
    other += sorted(p.name + "/" for p in path.iterdir() if p.is_dir() and p.name in files)
    if other:
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        return f"it holds files that are not part of the bag: {shown}"
    return None


def check_output_path(dst: Path, force: bool, inputs: Iterable[Path] = ()) -> None:
    """OUT may be created (or, with force, replaced) without touching any input; BagError otherwise."""
    if dst.is_symlink():
        raise BagError(f"OUT {dst} is a symbolic link; give the real path of a new folder")
    out = _resolved(dst)
    for src in inputs:
        src = Path(src)
        for p in input_paths(src):
            if _inside(p, out):
                raise BagError(f"OUT {dst} contains the input {src}" + (f" ({p})" if p != _resolved(src) else "")
                               + "; writing there would destroy it: choose another OUT")
            if _inside(out, p):
                raise BagError(f"OUT {dst} must not be IN {src} or lie inside it")
    if dst.exists():
        if not force:
            raise BagError(f"{dst} exists; pass --force to replace it (only a bag folder is ever replaced)")
        if not dst.is_dir():
            raise BagError(f"{dst} exists and is a file, not a bag folder; --force replaces only a rosbag2 "
                           f"bag folder: remove it yourself or choose another OUT")
        reason = not_a_bag_folder(dst)
        if reason:
            raise BagError(f"{dst} exists and is not a rosbag2 bag folder ({reason}); --force replaces only "
                           f"a bag folder: choose another OUT")
    if not dst.parent.is_dir():
        raise BagError(f"the folder {dst.parent} for {dst.name} does not exist")


@contextmanager
def atomic_bag_output(dst: Path, inputs: Iterable[Path] = ()) -> Iterator[Path]:
    """Yield a path to write a bag folder at; it becomes `dst` only when the block completes.

    The bag is written inside a hidden folder beside `dst`; an exception (or Ctrl-C) removes it,
    and a killed run's folder is removed by the next run. An existing `dst` (checked by
    `check_output_path`) is replaced only once the new bag is complete.
    """
    protected = [p for src in inputs for p in input_paths(Path(src))]
    remove_stale_partials(dst, protected)
    work = dst.parent / f".{dst.name}{_PARTIAL}{os.getpid()}"
    with storage_writes():
        work.mkdir()
    try:
        yield work / dst.name
        with storage_writes():
            old = None
            if dst.exists():
                old = dst.parent / f".{dst.name}{_REPLACED}{os.getpid()}"
                dst.rename(old)
            (work / dst.name).rename(dst)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)  # the new OUT is in place; the old one is only in the way
    finally:
        shutil.rmtree(work, ignore_errors=True)


def remove_stale_partials(dst: Path, protected: list[Path]) -> None:
    """Work folders of earlier runs that were killed (their process is gone), never an input.
    One named after this process is stale too: a killed run's pid can come round again (a new
    container, a fleet's next worker), and this process writes one OUT at a time."""
    for p in dst.parent.glob(f".{dst.name}{_PARTIAL}*"):
        try:
            pid = int(p.name.rsplit("-", 1)[1])
            if pid != os.getpid():
                os.kill(pid, 0)
                continue  # that run is still going
        except ProcessLookupError:
            pass
        except (ValueError, PermissionError):
            continue
        if p.is_symlink() or not p.is_dir() or any(_inside(q, p.resolve()) for q in protected):
            continue
        log.info("removing %s left by an interrupted run", p)
        shutil.rmtree(p, ignore_errors=True)

"""`dap-led bag` over many bags: one Ray task per bag, an embedded local Ray or a cluster.

Ray is the engine: it places the tasks and decides how many run at once (each asks for
`threads` CPUs; a local Ray gets `workers` CPUs). Each task is the single-bag path
(`prepare` + `enhance_prepared`), so a bag's OUT is written in a hidden folder beside it and
renamed into place when complete: an OUT folder that exists is a finished bag, and a rerun skips
it (resume) unless `force`. A bag that fails, whatever the cause (bad input, a write error, an
exception, a crashed worker), is one failed row; the other bags go on. Each Ray worker process
keeps its Enhancer between tasks (keyed by its settings), so the model loads once per worker.
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import ray
from tqdm import tqdm

from dap_led_ros.bag.bag_enhance import BagEnhanceOptions, enhance_prepared, prepare
from dap_led_ros.bag.bag_errors import BagError, BagWriteError, write_failure_cause
from dap_led_ros.bag.bag_output import input_paths, not_a_bag_folder, remove_stale_partials
from dap_led_ros.bag.bag_storage import STORAGE_SUFFIXES
from dap_led_ros.enhancer import Enhancer, EnhancerConfig
from dap_led_ros.stop_signals import StopSignals

LIST_SUFFIXES = (".txt", ".list")   # a regular file with one of these is a list of bags
GLOB_CHARS = "*?["
SHIPPED_MODEL_NAMES = (None, "", "quality", "realtime", "auto")
# Only paths and small results pass through Ray's object store, never a bag's messages.
OBJECT_STORE_BYTES = 256 * 2**20
CANCEL_WAIT_S = 5.0                 # how long a stopped run gives its cancelled tasks to clean up
FAILURE_LINES = 20                  # frame failures a task sends back as text (all are counted)

DONE, SKIPPED, FAILED, NOT_RUN = "done", "skipped (done)", "failed", "not run (interrupted)"


class FleetError(BagError):
    """The fleet cannot start as asked (bad arguments, no bags, clashing outputs); nothing was written."""


# ----------------------------------------------------------------------------- which bags


def is_bag(path: Path) -> bool:
    """A rosbag2 folder (it has a metadata.yaml) or a single .db3 / .mcap file."""
    if path.is_dir():
        return (path / "metadata.yaml").is_file()
    return path.is_file() and path.suffix in STORAGE_SUFFIXES


def is_glob(text: str) -> bool:
    return any(c in text for c in GLOB_CHARS) and not Path(text).exists()


def is_list_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in LIST_SUFFIXES


def bags_in_folder(folder: Path) -> list[Path]:
    """The bags directly inside `folder` (hidden entries, e.g. work folders, left out), by name."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise FleetError(f"cannot list {folder}: {write_failure_cause(exc)}") from exc
    return [p for p in entries if not p.name.startswith(".") and is_bag(p)]


def is_fleet(inputs: list[str]) -> bool:
    """Several INs, a glob, a list file, or a folder that is not a bag but holds bags."""
    if len(inputs) != 1:
        return True
    text = inputs[0]
    path = Path(text)
    if is_glob(text) or is_list_file(path):
        return True
    return path.is_dir() and not is_bag(path) and bool(bags_in_folder(path))


def read_list_file(path: Path) -> list[Path]:
    """One bag path per line; `#` comment lines and blank lines ignored; relative to the list file."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise FleetError(f"cannot read the list file {path}: {write_failure_cause(exc)}") from exc
    except UnicodeDecodeError as exc:
        raise FleetError(f"the list file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    bags = []
    for line in text.splitlines():
        entry = line.strip()
        if entry and not entry.startswith("#"):
            p = Path(entry).expanduser()
            bags.append(p if p.is_absolute() else path.parent / p)
    return bags


def resolve_inputs(inputs: list[str]) -> list[Path]:
    """The bags the INs name, in order, each once: a bag, a folder of bags, a glob (its matches
    that are bags), a list file (its entries as written: a missing one becomes a failed bag)."""
    found: list[Path] = []
    for text in inputs:
        path = Path(text)
        if is_glob(text):
            matches = [Path(m) for m in sorted(glob.glob(text))]
            bags = [m for m in matches if is_bag(m)]
            if not bags:
                raise FleetError(f"no bags match {text!r}"
                                 + (f" ({len(matches)} paths match, none a bag)" if matches else ""))
            found += bags
        elif is_list_file(path):
            entries = read_list_file(path)
            if not entries:
                raise FleetError(f"the list file {path} names no bags")
            found += entries
        elif path.is_dir() and not is_bag(path):
            bags = bags_in_folder(path)
            if not bags:
                raise FleetError(f"{path} is not a bag and holds no bags (rosbag2 folders, .db3 or .mcap files)")
            found += bags
        else:
            found.append(path)
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    if not unique:
        raise FleetError("no bags found")
    return list(unique.values())


def output_name(bag: Path) -> str:
    """A bag folder keeps its name; a single-file bag becomes a folder named after its stem."""
    return bag.stem if bag.suffix in STORAGE_SUFFIXES and not bag.is_dir() else bag.name


# ----------------------------------------------------------------------------- one bag, in a Ray task


@dataclass
class FleetJob:
    """What one task needs; every path absolute (a Ray worker need not share the driver's cwd)."""

    name: str
    src: str
    dst: str
    options: BagEnhanceOptions
    enhancer: EnhancerConfig


@dataclass
class BagResult:
    """What a task sends back: counts and text only."""

    name: str
    src: str
    status: str
    frames: int = 0
    seconds: float = 0.0
    frame_failures: int = 0
    failure_lines: list[str] = field(default_factory=list)   # the first FAILURE_LINES of them
    messages: int = 0                                        # input messages copied
    error: str = ""
    worker: str = ""                                         # host:pid of the Ray worker
    model_loaded: bool = False                               # this task loaded the model (not cached)


_worker_enhancers: dict[str, Enhancer] = {}  # per Ray worker process: settings -> Enhancer


def worker_enhancer(cfg: EnhancerConfig) -> tuple[Enhancer, bool]:
    """This process's Enhancer for `cfg` (made on first use; one kept) and whether it was made now.
    Its fusion histories and heatmap cache are cleared: every bag starts as a fresh run."""
    key = repr(cfg)
    enhancer = _worker_enhancers.get(key)
    made = enhancer is None
    if made:
        for old in _worker_enhancers.values():
            old.close()
        _worker_enhancers.clear()
        enhancer = _worker_enhancers[key] = Enhancer(cfg)
    return enhancer, made  # each bag's streams end with the bag: nothing carries over


class _ModelNotLoaded(Exception):
    pass


def enhance_one(job: FleetJob) -> BagResult:
    """Enhance one bag as `dap-led bag SRC DST` would; every error becomes the result's text."""
    result = BagResult(job.name, job.src, FAILED, worker=f"{socket.gethostname()}:{os.getpid()}")
    started = time.monotonic()
    try:
        bag = prepare(Path(job.src), Path(job.dst), job.options)  # a bad bag fails before the model loads
        try:
            enhancer, result.model_loaded = worker_enhancer(job.enhancer)
        except (ValueError, RuntimeError, OSError) as exc:  # what Enhancer(...) raises for a model it cannot load
            bag.close()
            raise _ModelNotLoaded(str(exc)) from exc
        except BaseException:
            bag.close()
            raise
        summary = enhance_prepared(bag, Path(job.dst), enhancer, job.options, progress=False)
    except _ModelNotLoaded as exc:
        result.error = f"cannot load the model: {exc}"
    except BagWriteError as exc:
        result.error = f"cannot write {job.dst}: {exc.cause}; nothing was written"
    except BagError as exc:
        result.error = str(exc)
    except OSError as exc:
        result.error = f"cannot write {job.dst}: {write_failure_cause(exc)}; nothing was written"
    except Exception as exc:  # a bug met in one bag must not stop the fleet
        result.error = f"{type(exc).__name__}: {exc}"
    else:
        result.status = DONE
        result.frames = summary.frames
        result.frame_failures = len(summary.failures)
        result.failure_lines = [str(f) for f in summary.failures[:FAILURE_LINES]]
        result.messages = sum(summary.copied.values())
    result.seconds = time.monotonic() - started
    return result


# Ray's own retries are off: a bag that crashes its worker is reported, not run again.
enhance_bag_task = ray.remote(max_retries=0)(enhance_one)


# ----------------------------------------------------------------------------- the driver


@dataclass
class FleetSettings:
    options: BagEnhanceOptions = field(default_factory=BagEnhanceOptions)
    enhancer: EnhancerConfig = field(default_factory=lambda: EnhancerConfig(temporal=True))
    workers: int | None = None       # CPUs of the embedded local Ray; None = this machine's cores
    ray_address: str | None = None   # an existing Ray cluster (then `workers` must be None)
    progress: bool = True

    @property
    def cpus_per_bag(self) -> int:
        return self.enhancer.threads or 1


def machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def plan_fleet(inputs: list[str], out_dir: Path, settings: FleetSettings) -> list[FleetJob]:
    """One job per bag, OUT/<name> each; FleetError (nothing written) for what cannot run."""
    try:
        settings.options.validate()
        settings.enhancer.validate()
    except ValueError as exc:
        raise FleetError(str(exc)) from None
    if settings.workers is not None:
        if settings.ray_address:
            raise FleetError("--workers sets the CPUs of the local Ray; a cluster (--ray-address) has its own")
        if settings.workers < 1:
            raise FleetError(f"--workers must be >= 1, got {settings.workers}")
        if settings.cpus_per_bag > settings.workers:
            raise FleetError(f"each bag asks for {settings.cpus_per_bag} CPUs (--threads) but the local Ray "
                             f"has {settings.workers} (--workers): no bag could start")
    bags = resolve_inputs(inputs)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FleetError(f"OUT {out_dir} is a file; with several bags OUT is the folder their outputs go in")
    if is_bag(out_dir):
        raise FleetError(f"OUT {out_dir} is a bag; with several bags OUT is the folder their outputs go in")
    if not out_dir.absolute().parent.is_dir():
        raise FleetError(f"the folder {out_dir.absolute().parent} for {out_dir.name} does not exist")
    out = out_dir.resolve()
    for text in inputs:  # a scanned folder must not receive the outputs: the next scan would find them
        folder = Path(text)
        if not is_glob(text) and folder.is_dir() and not is_bag(folder) and _inside(out, folder.resolve()):
            raise FleetError(f"OUT {out_dir} must not be the input folder {folder} or lie inside it")
    by_name: dict[str, list[Path]] = {}
    for bag in bags:
        by_name.setdefault(output_name(bag), []).append(bag)
    clashes = {n: b for n, b in by_name.items() if len(b) > 1}
    if clashes:
        shown = "; ".join(f"{out_dir / n} <- {', '.join(str(b) for b in bs)}" for n, bs in sorted(clashes.items()))
        raise FleetError(f"{sum(len(b) for b in clashes.values())} bags would be written to the same output "
                         f"folder: {shown}; rename them or run them in separate fleets")
    sources = [b.resolve() for b in bags]
    for bag, src in zip(bags, sources):
        if _inside(out, src):
            raise FleetError(f"OUT {out_dir} must not be the input {bag} or lie inside it")
    for bag in bags:
        dst = out / output_name(bag)
        hit = next((b for b, src in zip(bags, sources) if _inside(src, dst)), None)
        if hit is not None:
            raise FleetError(f"the output {out_dir / output_name(bag)} of {bag} would be written over the input "
                             f"{hit}: choose another OUT")
    cfg = dataclasses.replace(settings.enhancer, threads=settings.cpus_per_bag,
                              model=_absolute(settings.enhancer.model, SHIPPED_MODEL_NAMES),
                              engine=_absolute(settings.enhancer.engine, (None, "")))
    return [FleetJob(output_name(b), str(b.absolute()), str(out_dir.absolute() / output_name(b)),
                     settings.options, cfg) for b in bags]


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _absolute(value: str | None, names: tuple) -> str | None:
    return value if value in names else str(Path(value).absolute())


@dataclass
class FleetReport:
    results: list[BagResult]
    seconds: float = 0.0              # the whole run, Ray's start included
    ray_start_seconds: float = 0.0    # ray.init: starting the local Ray or connecting to a cluster
    ray_where: str = ""               # e.g. "local, 2 CPUs, started"
    stopped_by: int | None = None     # the signal that stopped the run

    @property
    def exit_code(self) -> int:
        """0 every bag done or skipped; 1 some bag failed or had frame failures; 128+N stopped by signal N."""
        if self.stopped_by is not None:
            return 128 + self.stopped_by
        bad = any(r.status in (FAILED, NOT_RUN) or r.frame_failures for r in self.results)
        return 1 if bad else 0

    def table(self) -> str:
        rows = [("bag", "status", "frames", "seconds", "frame failures", "error")]
        for r in self.results:
            ran = r.status in (DONE, FAILED)
            rows.append((r.name, r.status, str(r.frames) if ran else "-", f"{r.seconds:.1f}" if ran else "-",
                         str(r.frame_failures) if ran else "-", _one_line(r.error)))
        counts = {s: sum(r.status == s for r in self.results) for s in (DONE, SKIPPED, FAILED, NOT_RUN)}
        tally = ", ".join(f"{n} {s.split(' ')[0] if s != NOT_RUN else 'not run'}" for s, n in counts.items() if n)
        rows.append((f"total ({len(self.results)} bags)", tally, str(sum(r.frames for r in self.results)),
                     f"{self.seconds:.1f}", str(sum(r.frame_failures for r in self.results)), ""))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                 + ("  " + row[5] if row[5] else "") for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
        if self.ray_where:
            lines.append(f"ray: {self.ray_where} in {self.ray_start_seconds:.1f} s")
        if self.stopped_by is not None:
            lines.append(f"stopped by {signal.Signals(self.stopped_by).name}: finished bags are kept, "
                         f"a rerun skips them")
        return "\n".join(line.rstrip() for line in lines)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _ray_error_text(exc: Exception) -> str:
    """A short reason for a task that raised or whose worker died (the cause, not Ray's traceback)."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        return f"the task raised {type(cause).__name__}: {str(cause).splitlines()[-1] if str(cause) else ''}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"


def _start_ray(settings: FleetSettings) -> tuple[bool, str]:
    """Connect to the cluster or start the embedded local Ray; (whether we own it, where it runs)."""
    if ray.is_initialized():  # a caller's Ray (tests, notebooks): used as it is, left running
        return False, "the running Ray instance, joined"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Quiet: no dashboard, no worker output, only Ray's errors (not its notes, e.g. on token auth).
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        if settings.ray_address:
            ray.init(address=settings.ray_address, **quiet)
            return True, f"cluster at {settings.ray_address}, connected"
        cpus = settings.workers or machine_cores()
        ray.init(address="local", num_cpus=cpus, object_store_memory=OBJECT_STORE_BYTES, **quiet)
        return True, f"local, {cpus} CPU{'s' if cpus > 1 else ''}, started"
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        ray.shutdown()  # whatever part of it had started
        where = f"connect to the Ray cluster at {settings.ray_address}" if settings.ray_address else "start Ray"
        raise FleetError(f"cannot {where}: {_one_line(str(exc))}") from exc


def run_fleet(jobs: list[FleetJob], settings: FleetSettings, task=None) -> FleetReport:
    """Run every job as a Ray task (`task`: the remote function, enhance_bag_task by default) and
    collect the results as they finish. SIGINT/SIGTERM stop the run: the running bags are
    cancelled (a cancelled task removes its work folder), finished ones stay."""
    task = task or enhance_bag_task
    started = time.monotonic()
    results: dict[str, BagResult] = {}
    todo: list[FleetJob] = []
    for job in jobs:
        finished = None if job.options.force else _finished(job)
        if finished is None:
            todo.append(job)
        else:
            results[job.name] = finished
    for folder in sorted({Path(job.dst).parent for job in todo}):
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise FleetError(f"cannot make the output folder {folder}: {write_failure_cause(exc)}") from exc
    report = FleetReport([])
    if todo:
        main_thread = threading.current_thread() is threading.main_thread()
        sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None  # ray.init sets its own
        t0 = time.monotonic()
        owned, report.ray_where = _start_ray(settings)
        report.ray_start_seconds = time.monotonic() - t0
        stop = _SignalStop()
        try:
            stop.install()
            _collect(todo, settings, task, results, stop)
        finally:
            stop.restore()
            if owned:
                ray.shutdown()
                if main_thread:
                    signal.signal(signal.SIGTERM, sigterm)
        report.stopped_by = stop.signum
    for job in jobs:
        results.setdefault(job.name, BagResult(job.name, job.src, NOT_RUN))
    report.results = [results[job.name] for job in jobs]
    report.seconds = time.monotonic() - started
    return report


def _finished(job: FleetJob) -> BagResult | None:
    """A skipped row when the bag's OUT exists (renamed into place only when complete), a failed
    row when something else has that name, None when the bag is still to do."""
    dst = Path(job.dst)
    if not dst.exists() and not dst.is_symlink():
        return None
    reason = not_a_bag_folder(dst) if dst.is_dir() and not dst.is_symlink() else "not a folder"
    if reason is not None:
        return BagResult(job.name, job.src, FAILED, error=f"{dst} exists and is not a finished bag ({reason}); "
                                                            f"move it away or choose another OUT")
    remove_stale_partials(dst, input_paths(Path(job.src)))  # a work folder left by a run killed after its rename
    return BagResult(job.name, job.src, SKIPPED)


class _SignalStop(StopSignals):
    """StopSignals that remember which signal came."""

    def __init__(self) -> None:
        super().__init__()
        self.signum: int | None = None

    def _on_signal(self, signum, frame) -> None:
        self.signum = self.signum or signum
        super()._on_signal(signum, frame)


def _collect(todo: list[FleetJob], settings: FleetSettings, task, results: dict[str, BagResult],
             stop: StopSignals) -> None:
    pending = {task.options(num_cpus=settings.cpus_per_bag).remote(job): job for job in todo}
    bar = tqdm(total=len(todo), unit="bag", desc="bags", disable=not settings.progress, dynamic_ncols=True)
    frames = failed = 0
    try:
        while pending and not stop.requested.is_set():
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the task raised past enhance_one, or its worker died
                    result = BagResult(job.name, job.src, FAILED, error=_ray_error_text(exc))
                results[job.name] = result
                frames += result.frames
                failed += result.status == FAILED
                for line in result.failure_lines:
                    tqdm.write(f"warning: {job.name}: {line}; copied unchanged", file=sys.stderr)
                if result.status == FAILED:
                    tqdm.write(f"error: {job.name}: {_one_line(result.error)}", file=sys.stderr)
                bar.update(1)
                bar.set_postfix(frames=frames, failed=failed, refresh=False)
    finally:
        bar.close()
        if pending:  # stopped: a running task gets KeyboardInterrupt and removes its work folder
            for ref in pending:
                ray.cancel(ref)
            ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_WAIT_S)

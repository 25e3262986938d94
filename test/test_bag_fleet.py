"""`dap-led bag` over a fleet of bags on a real local Ray: same bytes as per-bag runs, resume after
SIGKILL / SIGTERM, one bad bag among good ones, input resolution, the summary table.

Ray starts once for the module (in this process); the tests that kill a driver start their own
embedded Ray in a `dap-led bag` subprocess, as a user's run does.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import ray
from test_bag import DAP_LED, check_output, connections, make_bag, read_all

from dap_led_ros.bag import fleet
from dap_led_ros.bag.bag_enhance import BagEnhanceOptions, enhance_bag
from dap_led_ros.cli import main as cli_main
from dap_led_ros.enhancer import Enhancer, EnhancerConfig

# Three Ray clusters start in one test below; on 2 starved cores one took 142 s to run its first bag.
pytestmark = pytest.mark.timeout(600)

RAY_CPUS = 2
# Ray's dashboard and runtime-env agents outlive a SIGKILLed driver by about a minute (until their
# GCS client gives up); the core processes (GCS, raylet, workers) go at once.
AGENTS = ("DashboardAgent", "RuntimeEnvAgent")
SINGLE_FILE = {"drive5", "drive6"}  # of the 8 bags, these are a single .mcap / .db3 file


# ----------------------------------------------------------------------------- helpers


def _wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(interval)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in "ZX"


def _descendants(root: int) -> dict[int, str]:
    """Every live process below `root`, with its command line."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            children.setdefault(stat[1], []).append(int(entry.name))
    found, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                found[child] = (Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
                                .decode(errors="replace"))
            except OSError:
                continue
            todo.append(child)
    return found


def _finished(out: Path) -> dict[str, tuple[int, int]]:
    """Finished outputs (not hidden) -> (inode, mtime_ns) of the folder and its newest file."""
    if not out.is_dir():
        return {}
    return {p.name: (p.stat().st_ino, max([p.stat().st_mtime_ns] + [f.stat().st_mtime_ns for f in p.iterdir()]))
            for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")}


def _bag_set(root: Path, frames: int, size: tuple[int, int]) -> tuple[Path, dict[str, Path]]:
    """8 bags in `root/bags`: rosbag2 folders (sqlite3 and mcap) and single .mcap / .db3 files.
    Returns the folder and, per output name, a rosbag2 folder with the same messages."""
    made, bags = root / "made", root / "bags"
    made.mkdir(parents=True)
    bags.mkdir()
    reference = {}
    for i in range(8):
        storage = "mcap" if i % 2 else "sqlite3"
        folder = made / f"drive{i}"
        make_bag(folder, storage, frames=frames, size=size)
        reference[f"drive{i}"] = folder
        if folder.name in SINGLE_FILE:
            shutil.copyfile(next(folder.glob("*.mcap" if storage == "mcap" else "*.db3")),
                            bags / f"drive{i}.{'mcap' if storage == 'mcap' else 'db3'}")
        else:
            shutil.copytree(folder, bags / f"drive{i}")
    return bags, reference


def _rows(table: str) -> dict[str, str]:
    """Summary-table lines by their first word (the bag's output name)."""
    return {line.split()[0]: line for line in table.splitlines() if line.split()}


def _check(reference: Path, dst: Path) -> None:
    """test_bag.check_output for a bag folder; for a single-file bag only its messages: rosbags keeps
    the MCAP type hashes in metadata.yaml, which the single file lacks (so its copy has none)."""
    if reference.name in SINGLE_FILE:
        enhanced = {"/cam/enhanced/image", "/cam/enhanced/image/compressed", "/cam/enhanced/camera_info"}
        assert [m for m in read_all(dst) if m[0] not in enhanced] == read_all(reference)
    else:
        check_output(reference, dst)


def _settings(checkpoint: Path, **kw) -> fleet.FleetSettings:
    return fleet.FleetSettings(enhancer=EnhancerConfig(model=str(checkpoint), backend="torch", temporal=True),
                               progress=False, **kw)


def _cli(checkpoint: Path) -> list[str]:
    return ["--model", str(checkpoint), "--backend", "torch"]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def bag_set(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    return _bag_set(tmp_path_factory.mktemp("fleet"), frames=3, size=(40, 32))


@pytest.fixture(scope="module")
def local_ray():
    """One embedded Ray for the module; run_fleet uses a running Ray and leaves it running."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    sigterm = signal.getsignal(signal.SIGTERM)  # ray.init sets its own; the rest of the suite gets it back
    ray.init(address="local", num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, object_store_memory=fleet.OBJECT_STORE_BYTES)
    yield
    ray.shutdown()
    signal.signal(signal.SIGTERM, sigterm)


@pytest.fixture
def kill_driver_procs():
    """Records a driver's Ray processes; any still alive at the end are killed (by pid) and listed."""
    recorded: dict[int, str] = {}
    yield recorded
    left = {pid: cmd for pid, cmd in recorded.items() if _alive(pid)}
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    if left:
        print(f"killed {len(left)} Ray process(es) the killed driver left: "
              + ", ".join(cmd.split()[0] for cmd in left.values()))


# ----------------------------------------------------------------------------- (2) kill and resume


def test_killed_runs_resume_without_redoing_finished_bags(tmp_path, checkpoint, kill_driver_procs, local_ray,
                                                          capsys):
    bags, reference = _bag_set(tmp_path, frames=6, size=(64, 48))
    out = tmp_path / "out"
    cmd = DAP_LED + ["bag", str(bags), str(out), "--workers", "1"] + _cli(checkpoint)

    # SIGKILL of the driver once a bag is finished: finished bags stay, Ray's processes go with it
    log1 = (tmp_path / "run1.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log1, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: _finished(out) or proc.poll() is not None, 240, "a first finished bag")
        ray_procs = _descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        log1.close()
    kill_driver_procs.update(ray_procs)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "run1.log").read_text()
    assert any("raylet" in c for c in ray_procs.values()) and any("gcs_server" in c for c in ray_procs.values())
    core = [pid for pid, c in ray_procs.items() if not any(a in c for a in AGENTS)]
    _wait_for(lambda: not any(_alive(pid) for pid in core), 30, "the killed driver's Ray processes to exit",
              interval=0.2)
    first = _finished(out)  # now that its workers are gone too
    assert 0 < len(first) < 8, first
    for name in first:
        _check(reference[name], out / name)

    # SIGTERM: the driver cancels, shuts Ray down and exits 143; the earlier bags were skipped
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        _wait_for(lambda: len(_finished(out)) > len(first) or proc.poll() is not None, 240, "one more bag")
        ray_procs = _descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    kill_driver_procs.update(ray_procs)
    assert proc.returncode == 128 + signal.SIGTERM, stdout
    assert "stopped by SIGTERM" in stdout
    rows = _rows(stdout)
    for name in first:
        assert "skipped (done)" in rows[name], stdout
    _wait_for(lambda: not any(_alive(pid) for pid in ray_procs), 30, "Ray to shut down after SIGTERM",
              interval=0.2)
    second = _finished(out)
    assert {n: second[n] for n in first} == first  # not redone: same inode and mtime

    # the rerun finishes the rest and redoes nothing; no work folder is left or counted
    code = cli_main(["bag", str(bags), str(out)] + _cli(checkpoint))
    table = capsys.readouterr().out
    assert code == 0, table
    rows = _rows(table)
    assert sorted(n for n in rows if n.startswith("drive")) == sorted(reference)
    for name in reference:
        assert ("skipped (done)" in rows[name]) == (name in second), rows[name]
    final = _finished(out)
    assert {n: final[n] for n in second} == second
    assert sorted(final) == sorted(reference)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    for name, src in reference.items():
        _check(src, out / name)


# ----------------------------------------------------------------------------- (1) same bytes as per-bag runs


def test_fleet_output_equals_per_bag_runs(tmp_path, bag_set, checkpoint, local_ray):
    bags, reference = bag_set
    settings = _settings(checkpoint)
    report = fleet.run_fleet(fleet.plan_fleet([str(bags)], tmp_path / "fleet", settings), settings)
    assert report.exit_code == 0, report.table()
    assert [r.status for r in report.results] == [fleet.DONE] * 8
    # the model loads at most once per Ray worker (an earlier test's run may have loaded it), not per bag
    workers = {r.worker for r in report.results}
    assert sum(r.model_loaded for r in report.results) <= len(workers) <= RAY_CPUS
    for r in report.results:
        assert r.frames == 6 and r.frame_failures == 0 and r.messages == 3 * 9
        single = tmp_path / "single" / r.name
        single.parent.mkdir(exist_ok=True)
        enhancer = Enhancer(EnhancerConfig(model=str(checkpoint), backend="torch", threads=1, temporal=True))
        enhance_bag(Path(r.src), single, enhancer, BagEnhanceOptions(), progress=False)
        got = tmp_path / "fleet" / r.name
        _check(reference[r.name], got)
        assert read_all(got) == read_all(single)  # every message, enhanced frames included: same bytes
        assert connections(got) == connections(single)
        assert {f.name: f.read_bytes() for f in got.iterdir()} == {f.name: f.read_bytes() for f in single.iterdir()}


def test_ray_address_runs_the_fleet_on_an_existing_cluster(tmp_path, bag_set, checkpoint, local_ray):
    bags, reference = bag_set
    address = ray.get_runtime_context().gcs_address  # this module's Ray, as a cluster to join
    out = tmp_path / "out"
    cmd = DAP_LED + ["bag", str(bags / "drive1"), str(bags / "drive6.db3"), str(out), "--ray-address", address]
    proc = subprocess.run(cmd + _cli(checkpoint), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"ray: cluster at {address}, connected in" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["drive1", "drive6"]
    for name in ("drive1", "drive6"):
        _check(reference[name], out / name)
    proc = subprocess.run(cmd + ["--workers", "2"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "a cluster (--ray-address) has its own" in proc.stderr


# ----------------------------------------------------------------------------- (3) failures stay in their row


def test_bad_bags_fail_alone(tmp_path, bag_set, checkpoint, local_ray, capsys):
    bags, _ = bag_set
    good = [bags / "drive0", bags / "drive5.mcap"]
    broken = tmp_path / "broken"
    make_bag(broken, "sqlite3", frames=1)
    (broken / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 9}\n")
    frames_bad = tmp_path / "badframes"
    make_bag(frames_bad, "mcap", frames=2, corrupt=True)
    missing = tmp_path / "missing"
    listed = tmp_path / "bags.txt"
    listed.write_text("\n".join(str(p) for p in good + [broken, frames_bad, missing]) + "\n")
    out = tmp_path / "out"
    code = cli_main(["bag", str(listed), str(out)] + _cli(checkpoint))
    captured = capsys.readouterr()
    assert code == 1, captured
    rows = _rows(captured.out)
    assert " done " in rows["drive0"] and " done " in rows["drive5"]
    assert " failed " in rows["broken"] and "not a readable rosbag2 metadata file" in rows["broken"]
    assert " failed " in rows["missing"] and "no such bag" in rows["missing"]
    assert " done " in rows["badframes"] and rows["badframes"].split()[4] == "3"  # 3 frame failures
    assert "badframes: /cam/image_raw @" in captured.err  # the frames are named
    assert sorted(p.name for p in out.iterdir()) == ["badframes", "drive0", "drive5"]

    # a Ray worker that dies in the middle of a bag: that bag fails, the others are done
    @ray.remote(max_retries=0)
    def crashing(job):
        if job.name == "drive1":
            os._exit(3)
        return fleet.enhance_one(job)

    settings = _settings(checkpoint)
    jobs = fleet.plan_fleet([str(bags / "drive1"), str(bags / "drive2"), str(bags / "drive3")], tmp_path / "o2",
                            settings)
    report = fleet.run_fleet(jobs, settings, task=crashing)
    by_name = {r.name: r for r in report.results}
    assert by_name["drive1"].status == fleet.FAILED and "died" in by_name["drive1"].error, by_name["drive1"]
    assert by_name["drive2"].status == by_name["drive3"].status == fleet.DONE
    assert report.exit_code == 1
    assert not (tmp_path / "o2" / "drive1").exists()


# ----------------------------------------------------------------------------- (4) inputs and names


def test_folder_glob_list_and_arguments_name_the_same_bags(tmp_path, bag_set):
    bags, _ = bag_set
    expected = fleet.resolve_inputs([str(bags)])
    assert [fleet.output_name(p) for p in expected] == [f"drive{i}" for i in range(8)]
    assert [p.name for p in expected][5:7] == ["drive5.mcap", "drive6.db3"]
    (bags / "notes").mkdir(exist_ok=True)  # neither a bag nor hidden: not picked up by a folder or a glob
    resolve = lambda *a: [p.resolve() for p in fleet.resolve_inputs(list(a))]  # noqa: E731
    want = [p.resolve() for p in expected]
    assert resolve(str(bags / "*")) == want
    lists = tmp_path / "lists"
    lists.mkdir()
    rel = os.path.relpath(bags, lists)
    (lists / "fleet.list").write_text("# the test fleet\n\n" + "\n".join(
        f"  {rel}/{p.name}" if i % 2 else str(p) for i, p in enumerate(expected)) + "\n# end\n")
    assert resolve(str(lists / "fleet.list")) == want
    assert resolve(*[str(p) for p in expected]) == want
    assert resolve(str(bags), str(bags / "drive0")) == want  # each bag once
    assert fleet.is_fleet([str(bags)]) and fleet.is_fleet([str(bags / "*")]) and \
        fleet.is_fleet([str(lists / "fleet.list")]) and fleet.is_fleet([str(expected[0]), str(expected[1])])
    assert not fleet.is_fleet([str(expected[0])]) and not fleet.is_fleet([str(expected[5])])
    (bags / "notes").rmdir()


def test_bad_fleets_are_refused_before_ray_starts(tmp_path, bag_set, checkpoint, capsys):
    bags, _ = bag_set
    clash = tmp_path / "clash"
    clash.mkdir()
    shutil.copytree(bags / "drive0", clash / "drive0")
    shutil.copyfile(bags / "drive5.mcap", clash / "drive0.mcap")
    out = tmp_path / "out"
    assert cli_main(["bag", str(clash), str(out)] + _cli(checkpoint)) == 2
    err = capsys.readouterr().err
    assert "2 bags would be written to the same output folder" in err
    assert f"{out / 'drive0'} <- {clash / 'drive0'}, {clash / 'drive0.mcap'}" in err
    assert cli_main(["bag", str(tmp_path / "nothing*"), str(out)]) == 2
    assert "no bags match" in capsys.readouterr().err
    (tmp_path / "empty.txt").write_text("# no bags yet\n")
    assert cli_main(["bag", str(tmp_path / "empty.txt"), str(out)]) == 2
    assert "names no bags" in capsys.readouterr().err
    assert cli_main(["bag", str(bags), str(bags / "enhanced")]) == 2
    assert "must not be the input folder" in capsys.readouterr().err
    assert cli_main(["bag", str(bags / "drive0"), str(bags / "drive1"), str(bags)]) == 2
    assert "written over the input" in capsys.readouterr().err
    assert cli_main(["bag", str(bags / "drive0"), str(bags / "drive5.mcap"), str(bags / "drive1")]) == 2
    assert "is a bag; with several bags OUT is the folder" in capsys.readouterr().err
    assert cli_main(["bag", str(bags), str(out), "--workers", "1", "--threads", "2"]) == 2
    assert "no bag could start" in capsys.readouterr().err
    assert cli_main(["bag", str(bags / "drive0"), str(out / "one"), "--workers", "2"]) == 2  # one bag: no Ray
    assert "are for several bags" in capsys.readouterr().err
    assert not out.exists()


# ----------------------------------------------------------------------------- the summary table


def test_summary_table_rows_and_totals():
    results = [fleet.BagResult("a", "/in/a", fleet.DONE, frames=12, seconds=1.26),
               fleet.BagResult("b", "/in/b", fleet.SKIPPED),
               fleet.BagResult("c", "/in/c", fleet.FAILED, seconds=0.5, error="no such bag\nat all"),
               fleet.BagResult("d", "/in/d", fleet.DONE, frames=4, seconds=2.0, frame_failures=2)]
    report = fleet.FleetReport(results, seconds=9.0, ray_start_seconds=4.2, ray_where="local, 2 CPUs, started")
    lines = report.table().splitlines()
    assert lines[0].split() == ["bag", "status", "frames", "seconds", "frame", "failures", "error"]
    assert lines[2].split() == ["a", "done", "12", "1.3", "0"]
    assert lines[3].split() == ["b", "skipped", "(done)", "-", "-", "-"]
    assert lines[4].split() == ["c", "failed", "0", "0.5", "0", "no", "such", "bag", "at", "all"]
    assert lines[5].split() == ["d", "done", "4", "2.0", "2"]
    assert lines[7].split() == ["total", "(4", "bags)", "2", "done,", "1", "skipped,", "1", "failed", "16", "9.0", "2"]
    assert lines[8] == "ray: local, 2 CPUs, started in 4.2 s"
    assert report.exit_code == 1
    assert fleet.FleetReport(results[:2]).exit_code == 0
    assert fleet.FleetReport(results[:2], stopped_by=signal.SIGINT).exit_code == 130


# ----------------------------------------------------------------------------- atomic output, stale work folders


def test_a_stale_work_folder_with_this_process_id_does_not_block_the_output(tmp_path, checkpoint):
    """A killed run's pid can come round again (a fresh container, a fleet's next worker)."""
    src, dst = tmp_path / "in", tmp_path / "out"
    make_bag(src, "sqlite3", frames=1)
    stale = tmp_path / f".out.partial-{os.getpid()}"
    (stale / "out").mkdir(parents=True)
    (stale / "out" / "half.db3").write_bytes(b"left by a killed run")
    enhancer = Enhancer(EnhancerConfig(model=str(checkpoint), backend="torch", threads=1))
    enhance_bag(src, dst, enhancer, progress=False)
    check_output(src, dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]

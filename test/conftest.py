"""Shared test fixtures: ROS isolation, node subprocesses, a tiny random checkpoint.

ROS tests run real rclpy nodes across processes. Each test (or test module, for a node started
once per module) gets its own ROS_DOMAIN_ID from the range its file owns (`DOMAIN_RANGES`),
discovery stays on this host, logs go under .cache/ros_log, and every process uses the shipped
Fast DDS profile.
"""
from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROS_LOG_DIR = ROOT / ".cache" / "ros_log"
# rosbag2's C++-recorded bags (read-only shared data beside the checkout; $DAP_LED_EXTERNAL_BAGS overrides)
EXTERNAL_BAGS = Path(os.environ.get("DAP_LED_EXTERNAL_BAGS") or ROOT.parent / "shared" / "data" / "external-bags")
needs_external = pytest.mark.skipif(not EXTERNAL_BAGS.is_dir(),
                                    reason=f"{EXTERNAL_BAGS} (C++-recorded bags) not present; set DAP_LED_EXTERNAL_BAGS")
EXTERNAL_BAG_NAMES = sorted(p.name for p in EXTERNAL_BAGS.iterdir() if p.name != "SOURCES.md") \
    if EXTERNAL_BAGS.is_dir() else []

# ROS_DOMAIN_ID range per test file prefix, so that test files never share a graph; others 60-69.
DOMAIN_RANGES: dict[str, tuple[int, int]] = {
    "test_enhance_node": (20, 29),
    "test_lifecycle": (30, 39),
    "test_pipeline": (40, 43),
    "test_launch": (40, 43),
    "test_depth": (44, 46),
    "test_detect": (47, 49),
    "test_bag": (50, 54),
    "test_replay": (55, 59),
    "test_node_hardening": (70, 74),
    "test_fuzz_node_input": (75, 79),
    "test_transport": (80, 84),
    "test_foreign": (90, 94),
    "test_multi_camera": (85, 89),
}
DEFAULT_DOMAIN_RANGE = (60, 69)


def _set_ros_environment() -> None:
    """Process-wide settings inherited by every node subprocess; before any rclpy.init()."""
    from dap_led_ros.ros.dds import configure_dds_environment

    ROS_LOG_DIR.mkdir(parents=True, exist_ok=True)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_LOG_DIR"] = str(ROS_LOG_DIR)
    os.environ.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    configure_dds_environment()


_set_ros_environment()
# Tests see only the photo pools they make: a Debian pool installed in this checkout
# (scripts/setup_photos.sh) must not change what they train and validate on.
os.environ["DAP_LED_PHOTOS"] = str(ROS_LOG_DIR.parent / "no-debian-photos")

_domain_counters: dict[str, Iterator[int]] = {}


def _next_domain_id(module_file: str) -> int:
    stem = Path(module_file).stem
    lo, hi = next((r for prefix, r in DOMAIN_RANGES.items() if stem.startswith(prefix)),
                  DEFAULT_DOMAIN_RANGE)
    if stem not in _domain_counters:
        # Start at a per-process offset: two pytest runs of one file rarely share a domain.
        ids = list(range(lo, hi + 1))
        start = os.getpid() % len(ids)
        _domain_counters[stem] = itertools.cycle(ids[start:] + ids[:start])
    return next(_domain_counters[stem])


@pytest.fixture
def ros_domain_id(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """A domain id of this test file's range, also exported to subprocesses."""
    domain = _next_domain_id(str(request.path))
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    return domain


@pytest.fixture(scope="module")
def module_domain_id(request: pytest.FixtureRequest) -> Iterator[int]:
    """Like ros_domain_id, shared by the tests of a module (for a node started once)."""
    domain = _next_domain_id(str(request.path))
    old = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    yield domain
    if old is None:
        os.environ.pop("ROS_DOMAIN_ID", None)
    else:
        os.environ["ROS_DOMAIN_ID"] = old


# ----------------------------------------------------------------------------- in-process ROS

# Transition id -> the primary state it ends in (lifecycle_msgs/msg/Transition).
_TRANSITION_GOALS = {1: "inactive", 2: "unconfigured", 3: "active", 4: "inactive",
                     5: "finalized", 6: "finalized", 7: "finalized"}
# Labels of the transition states (lifecycle_msgs/msg/State).
_TRANSITION_STATES = {"configuring", "cleaningup", "shuttingdown", "activating", "deactivating",
                      "errorprocessing"}


class RosHarness:
    """A test-side rclpy node in its own context, with waiting helpers that spin it."""

    def __init__(self, domain_id: int, name: str = "test_harness") -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._clients: dict[tuple[Any, str], Any] = {}

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.05, max(0.0, end - time.monotonic())))

    def spin_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        if not self.spin_while(lambda: not predicate(), timeout):
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    def spin_while(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Spin while `predicate` holds, at most `timeout` s; whether it stopped holding."""
        end = time.monotonic() + timeout
        while predicate():
            if time.monotonic() > end:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def wait_for_subscribers(self, publisher: Any, count: int = 1, timeout: float = 60.0) -> None:
        self.spin_until(lambda: publisher.get_subscription_count() >= count, timeout,
                        f"{count} subscriber(s) on {publisher.topic_name}")

    def wait_for_publishers(self, subscription: Any, count: int = 1, timeout: float = 60.0) -> None:
        self.spin_until(lambda: subscription.get_publisher_count() >= count, timeout,
                        f"{count} publisher(s) on {subscription.topic_name}")

    def wait_node_inputs(self, status_name: str, count: int = 1, timeout: float = 60.0) -> None:
        """Wait until the node whose /diagnostics status is `status_name` reports `count` publishers
        matched by its frame inputs (`input_publishers`). The match is discovered on each side on
        its own: our publisher counting the node's subscription does not mean the node knows our
        publisher yet, and a frame sent before it does never reaches a best-effort input."""
        from diagnostic_msgs.msg import DiagnosticArray

        from dap_led_ros.ros.diagnostics import values_of

        seen = [0]

        def on_diag(msg: DiagnosticArray) -> None:
            values = values_of(msg, status_name)
            if values is not None:
                seen[0] = int(values.get("input_publishers", "0"))

        sub = self.node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
        try:
            self.spin_until(lambda: seen[0] >= count, timeout,
                            f"{status_name} to match {count} publisher(s) on its input (last: {seen[0]})")
        finally:
            self.node.destroy_subscription(sub)

    # Fast DDS drops a response when the server has not yet matched the client's response reader
    # (it waits 100 ms; rmw_fastrtps #390/#467), which a loaded machine makes likely on a client's
    # first request. Clients are therefore kept for the harness's life, and a request with no
    # answer after RESEND_S is sent again: at once for idempotent services, after a state check
    # for lifecycle transitions.
    RESEND_S = 5.0

    def _client(self, srv_type: Any, name: str) -> Any:
        key = (srv_type, name)
        if key not in self._clients:
            self._clients[key] = self.node.create_client(srv_type, name)
        return self._clients[key]

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 30.0,
             before_resend: Callable[[], str] | None = None) -> Any:
        """Call a service and return its response (AssertionError on timeout).

        The request is resent while unanswered. For calls that are not idempotent,
        `before_resend` decides first: "resend", "wait" (keep waiting) or "stop" (return None).
        """
        client = self._client(srv_type, name)
        self.spin_until(client.service_is_ready, timeout, f"service {name}")
        end = time.monotonic() + timeout
        futures = [client.call_async(request)]
        while True:
            window = min(self.RESEND_S, end - time.monotonic())
            if self.spin_while(lambda: not any(f.done() for f in futures), max(0.0, window)):
                return next(f for f in futures if f.done()).result()
            if time.monotonic() >= end:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for the response of {name}")
            decision = "resend" if before_resend is None else before_resend()
            if decision == "stop":
                return None
            if decision == "resend":
                futures.append(client.call_async(request))

    def lifecycle_state(self, node_fqn: str, timeout: float = 30.0) -> str:
        from lifecycle_msgs.srv import GetState

        return self.call(GetState, f"{node_fqn}/get_state", GetState.Request(),
                         timeout).current_state.label

    def settled_lifecycle_state(self, node_fqn: str, timeout: float = 30.0) -> str:
        """The node's state once no transition is in progress: services answer during a
        transition (multi-threaded executor), so right after a log line the node may still be
        'configuring'."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.lifecycle_state(node_fqn, max(1.0, deadline - time.monotonic()))
            if state not in _TRANSITION_STATES or time.monotonic() > deadline:
                return state
            self.executor.spin_once(timeout_sec=0.05)

    def change_state(self, node_fqn: str, transition: int, timeout: float = 60.0) -> bool:
        """Trigger a lifecycle transition (lifecycle_msgs.msg.Transition.TRANSITION_*).

        If the answer is lost, the node's state tells whether the transition already happened.
        """
        from lifecycle_msgs.srv import ChangeState

        goal = _TRANSITION_GOALS.get(transition)
        before = self.lifecycle_state(node_fqn, timeout)
        reached = False

        def before_resend() -> str:
            nonlocal reached
            state = self.lifecycle_state(node_fqn, timeout)
            if state == before:
                return "resend"  # not done (or failed back to where it was): asking again is safe
            reached = state == goal
            return "stop" if reached else "wait"  # a transition state: its answer may still come

        request = ChangeState.Request()
        request.transition.id = transition
        response = self.call(ChangeState, f"{node_fqn}/change_state", request, timeout, before_resend)
        if response is None:
            return reached
        if not response.success and goal != before:
            # The answer to a resent request: the first one may have done the transition.
            return self.lifecycle_state(node_fqn, timeout) == goal
        return True

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture
def ros(ros_domain_id: int) -> Iterator[RosHarness]:
    harness = RosHarness(ros_domain_id)
    yield harness
    harness.close()


@pytest.fixture(scope="module")
def module_ros(module_domain_id: int) -> Iterator[RosHarness]:
    harness = RosHarness(module_domain_id)
    yield harness
    harness.close()


def load_module_from_file(path: Path, name: str) -> types.ModuleType:
    """Import a file that is not in a package (a script, the launch file)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- node processes

def console_command(script: str, module: str) -> list[str]:
    """The installed console script, else `python -m module`."""
    exe = Path(sys.executable).parent / script
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", module]


def enhance_node_cmd(ns: str, *params: str) -> list[str]:
    """An enhance_node process in namespace `ns` on the torch backend, one thread, diagnostics
    every 0.3 s; `params` are more `name:=value` overrides."""
    cmd = console_command("enhance_node", "dap_led_ros.ros.enhance_node")
    cmd += ["--ros-args", "-r", f"__ns:={ns}", "-p", "backend:=torch", "-p", "threads:=1",
            "-p", "diagnostics_period_s:=0.3"]
    for p in params:
        cmd += ["-p", p]
    return cmd


class NodeProcess:
    """A node running in a subprocess; its stdout+stderr go to a log file."""

    def __init__(self, command: Sequence[str], log_path: Path, env: dict[str, str] | None = None
                 ) -> None:
        self.command = list(command)
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env or dict(os.environ), cwd=ROOT)
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for_output(self, text: str, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while text not in self.output():
            if time.monotonic() > end or not self.alive():
                raise AssertionError(f"'{text}' not in the node's output:\n{self.output()}")
            time.sleep(0.1)

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        """Send `sig` and wait; kill after `timeout` (then AssertionError: it hung)."""
        if self.returncode is None:
            if self.alive():
                self.proc.send_signal(sig)
            try:
                self.returncode = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._log.close()
                raise AssertionError(f"node did not exit within {timeout} s of signal {sig}:\n"
                                     f"{self.output()}") from None
            self._log.close()
        return self.returncode

    def assert_clean_exit(self, sig: int = signal.SIGINT) -> str:
        """Stop with `sig`: exit code 0, no Python traceback or swallowed exception in the output."""
        code = self.stop(sig)
        out = self.output()
        assert code == 0, f"exit code {code} after signal {sig}:\n{out}"
        assert "Traceback" not in out, out
        assert "Exception ignored" not in out, out
        return out


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """start_node(command, name=...) -> NodeProcess; anything left running is killed after."""
    procs: list[NodeProcess] = []

    def start(command: Sequence[str], name: str = "node") -> NodeProcess:
        proc = NodeProcess(command, tmp_path / f"{name}-{len(procs)}.log")
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.returncode is None:
            try:
                proc.stop(signal.SIGKILL, timeout=10)
            except AssertionError:
                pass


# ----------------------------------------------------------------------------- checkpoints

# A random-init DAP-LED "tiny" variant narrowed further so CPU tests run fast; tests must not
# depend on restoration quality, only on the network being real and deterministic.
TEST_MODEL_OVERRIDES: dict[str, Any] = {"width": 8, "blocks": (1, 1, 1, 1), "stem_unshuffle": 2}


def save_tiny_checkpoint(path_without_ext: Path) -> Path:
    import torch

    from dap_led_ros.checkpoint import save_checkpoint
    from dap_led_ros.model import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig.from_variant("tiny", **TEST_MODEL_OVERRIDES)
    return save_checkpoint(build_model(cfg).eval(), cfg, path_without_ext)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`.safetensors` path of a random-init tiny model (its .yaml beside it)."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny_ckpt") / "tiny")


def copy_checkpoint(src: Path, dst: Path) -> Path:
    """Copy a checkpoint (.safetensors + .yaml) to `dst` (.safetensors path)."""
    shutil.copyfile(src, dst)
    shutil.copyfile(src.with_suffix(".yaml"), dst.with_suffix(".yaml"))
    return dst


# ----------------------------------------------------------------------------- the `ros` marker

ROS_FIXTURES = {"ros", "module_ros", "start_node", "ros_domain_id", "module_domain_id"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ros: needs rclpy or a ROS graph; `pytest -m 'not ros'` runs the ROS-free tests")
    _configure_fuzzing(config)


# ----------------------------------------------------------------------------- fuzzing (hypothesis)

# Generated cases per fuzz test: CI runs a fixed (derandomised) sample in minutes; `pytest --long`
# (scripts/reliability.sh) runs many more, randomised, for soak runs.
FUZZ_CASES: dict[str, int] = {}
_FUZZ_LONG = False


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", default=False,
                     help="reliability mode: many more generated fuzz cases and longer soaks")


def _configure_fuzzing(config: pytest.Config) -> None:
    global _FUZZ_LONG
    from hypothesis import HealthCheck, settings

    _FUZZ_LONG = bool(config.getoption("--long", default=False))
    common = dict(deadline=None, database=None, print_blob=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.function_scoped_fixture])
    settings.register_profile("dap_led_ci", derandomize=True, **common)
    settings.register_profile("dap_led_long", derandomize=False, **common)
    settings.load_profile("dap_led_long" if _FUZZ_LONG else "dap_led_ci")


def long_mode() -> bool:
    """Whether the suite runs in reliability (`--long`) mode."""
    return _FUZZ_LONG


def fuzz_examples(ci: int, long: int) -> int:
    """Examples for one fuzz test: `ci` in the normal suite, `long` under `pytest --long`."""
    return long if _FUZZ_LONG else ci


def count_fuzz_case(area: str, n: int = 1) -> None:
    """Count generated cases per area (conversion, node input, bag metadata) for the reliability report."""
    FUZZ_CASES[area] = FUZZ_CASES.get(area, 0) + n


# Measured figures of the reliability tests (soak RSS growth, flood rates, service latency...).
RELIABILITY_FIGURES: dict[str, Any] = {}


def record_figure(name: str, value: Any) -> None:
    """Keep a measured figure (a number or a short string) for the reliability report."""
    RELIABILITY_FIGURES[name] = value


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With DAP_LED_RELIABILITY_REPORT set, write the fuzz case counts and recorded figures there
    as JSON (scripts/reliability.sh builds docs/reliability.md from it)."""
    out = os.environ.get("DAP_LED_RELIABILITY_REPORT")
    if out:
        import json

        Path(out).write_text(json.dumps({"long": _FUZZ_LONG, "exitstatus": int(exitstatus),
                                         "cases": FUZZ_CASES, "figures": RELIABILITY_FIGURES},
                                        indent=2, sort_keys=True, default=str) + "\n")


def imported_modules(path: Path) -> set[str]:
    """Every module a Python file imports, at any depth (function-level too); `from m import n` gives m and m.n."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


_ROS_MODULES: dict[Path, bool] = {}


def _imports_ros(path: Path) -> bool:
    """Whether a test file imports rclpy, a ROS message package or the package's ROS layer."""
    if path not in _ROS_MODULES:
        _ROS_MODULES[path] = any(n.split(".")[0] == "rclpy" or n.split(".")[0].endswith("_msgs")
                                 or n.startswith("dap_led_ros.ros") for n in imported_modules(path))
    return _ROS_MODULES[path]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if ROS_FIXTURES & set(getattr(item, "fixturenames", ())) or _imports_ros(Path(item.path)):
            item.add_marker(pytest.mark.ros)

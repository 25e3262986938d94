"""Throughput of a running `enhance_node`: a camera stand-in publishes frames at a fixed rate, the
restored frames and the node's /diagnostics are read back.

The node runs as its own process (the console script, as a user starts it) under a namespace of
its own; the stand-in publishes sensor-data QoS like a camera driver and receives best-effort. The
figures: restored frames per second over the measured window, end-to-end latency (the input's
header stamp to the restored frame's arrival, both on this machine's clock) and the node's own
/diagnostics values (fps, p95 latency, per-stage times) at the end of the window.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import Image

from dap_led_ros.ros.dds import configure_dds_environment
from dap_led_ros.ros.diagnostics import DIAGNOSTICS_TOPIC, status_of, status_values

NODE_EXECUTABLE = "enhance_node"


class NodeBenchError(RuntimeError):
    """The node did not start, match or restore frames in time."""


@dataclass
class NodeBenchOptions:
    width: int = 640
    height: int = 480
    rate_hz: float = 30.0
    warmup_s: float = 10.0           # after the first restored frame, not measured
    duration_s: float = 30.0         # the measured window
    start_timeout_s: float = 600.0   # node start, model load / ONNX export, first frame
    namespace: str = "/dap_led_bench"
    params: dict[str, str] = field(default_factory=dict)  # enhance_node -p name:=value
    executable: str = NODE_EXECUTABLE
    log_path: Path | None = None     # the node's stdout/stderr (several nodes: one file each, suffixed)
    cameras: int = 1                 # cameras fed at rate_hz each (namespaces cam0, cam1, ... under namespace)
    separate_nodes: bool = False     # cameras > 1: one single-camera node per camera instead of one node

    def camera_names(self) -> list[str]:
        return [f"cam{i}" for i in range(self.cameras)] if self.cameras > 1 else [""]

    def validate(self) -> None:
        if not 1 <= self.cameras <= 16:
            raise ValueError(f"cameras must be in 1..16, got {self.cameras}")
        if self.width < 16 or self.height < 16:
            raise ValueError(f"frame size must be at least 16x16, got {self.width}x{self.height}")
        if self.rate_hz <= 0 or self.duration_s <= 0 or self.warmup_s < 0 or self.start_timeout_s <= 0:
            raise ValueError("need rate > 0, duration > 0, warmup >= 0, start timeout > 0")
        if not self.namespace.startswith("/"):
            raise ValueError(f"namespace must be absolute, got {self.namespace!r}")


@dataclass
class NodeBenchResult:
    size: str
    rate_hz: float
    sent: int                  # frames published in the measured window
    received: int              # restored frames received in the window
    fps_out: float             # restored frames per second in the window
    latency_p50_ms: float      # input stamp -> restored frame received
    latency_p95_ms: float
    diagnostics: dict[str, str]  # the node's last /diagnostics values (the first node's, with several)
    node_command: list[str]
    cameras: int = 1
    separate_nodes: bool = False
    per_camera_fps: list[float] = field(default_factory=list)
    rss_mib: float = 0.0        # resident memory of the node process(es) at the end of the window, summed
    rss_peak_mib: float = 0.0   # their peak resident memory (VmHWM), summed


def night_sequence(width: int, height: int, count: int = 60, seed: int = 0) -> list[np.ndarray]:
    """A dark, noisy panning scene (BGR uint8): lights, gradients and edges that move by a few px
    per frame, so the frame statistics (and a reused prior) see motion like a driving camera."""
    rng = np.random.default_rng(seed)
    big_w, big_h = width + 4 * count, height + 2 * count
    yy, xx = np.mgrid[0:big_h, 0:big_w].astype(np.float32)
    scene = 0.08 + 0.06 * np.sin(xx / 37.0) * np.cos(yy / 23.0)
    scene = np.repeat(scene[..., None], 3, axis=2) * np.array([0.8, 1.0, 1.2], np.float32)
    for _ in range(12):  # street lights and lit windows
        cx, cy, r = rng.uniform(0, big_w), rng.uniform(0, big_h * 0.6), rng.uniform(3, 12) * width / 640
        glow = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (3 * r) ** 2))
        scene += glow[..., None] * rng.uniform(0.3, 0.9) * np.array([0.6, 0.8, 1.0], np.float32)
    frames = []
    for i in range(count):
        crop = scene[i * 2:i * 2 + height, i * 4:i * 4 + width]
        noisy = crop + rng.normal(0, 0.02, crop.shape).astype(np.float32)
        frames.append(np.clip(noisy * 255 + 0.5, 0, 255).astype(np.uint8))
    return frames


def _image_msg(bgr: np.ndarray) -> Image:
    msg = Image()
    msg.height, msg.width = bgr.shape[:2]
    msg.encoding = "bgr8"
    msg.step = msg.width * 3
    msg.header.frame_id = "bench_camera"
    msg.data = bgr.tobytes()
    return msg


def _executable(name: str) -> str:
    """The console script beside this interpreter (a venv not on PATH), else `name` from PATH."""
    sibling = Path(sys.executable).parent / name
    return str(sibling) if os.sep not in name and sibling.is_file() else name


def node_command(options: NodeBenchOptions, namespace: str | None = None,
                 extra: dict[str, str] | None = None) -> list[str]:
    cmd = [options.executable, "--ros-args", "-r", f"__ns:={namespace or options.namespace}"]
    for name, value in {**options.params, **(extra or {})}.items():
        cmd += ["-p", f"{name}:={value}"]
    return cmd


@dataclass
class _NodeSpec:
    command: list[str]
    diag_name: str
    log_path: Path | None


def node_specs(options: NodeBenchOptions) -> list[_NodeSpec]:
    """The node process(es) to start: one (one camera, or all cameras on one model), or one per camera."""
    ns = options.namespace.rstrip("/")
    cameras = options.camera_names()

    def log(i: int) -> Path | None:
        if options.log_path is None or len(cameras) == 1 or not options.separate_nodes:
            return options.log_path
        return options.log_path.with_name(f"{options.log_path.stem}_{i}{options.log_path.suffix}")

    if options.separate_nodes and len(cameras) > 1:
        return [_NodeSpec(node_command(options, f"{ns}/{c}"), f"{ns}/{c}/{NODE_EXECUTABLE}".lstrip("/"), log(i))
                for i, c in enumerate(cameras)]
    extra = {"cameras": ",".join(cameras)} if len(cameras) > 1 else {}
    return [_NodeSpec(node_command(options, extra=extra), f"{ns}/{NODE_EXECUTABLE}".lstrip("/"), log(0))]


def _rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB (0 when it is gone)."""
    values = {"VmRSS:": 0.0, "VmHWM:": 0.0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0] + ":"
            if key in values:
                values[key] = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return values["VmRSS:"], values["VmHWM:"]


class _Probe:
    """The camera stand-in: publishes frames from a thread, records restored frames and diagnostics."""

    def __init__(self, node: Any, camera_ns: str, diag_name: str) -> None:
        self.node = node
        camera_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.pub = node.create_publisher(Image, f"{camera_ns}/image_raw", camera_qos)
        self.sub = node.create_subscription(Image, f"{camera_ns}/enhanced/image", self._on_image, camera_qos)
        self.diag_sub = node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diag, 10)
        self.diag_name = diag_name
        self.lock = threading.Lock()
        self.arrivals: list[tuple[float, float]] = []  # (receipt, latency) in seconds, wall clock
        self.diagnostics: dict[str, str] = {}
        self.problem = ""
        self.sent_times: list[float] = []

    def _on_image(self, msg: Image) -> None:
        now = time.time()
        stamp = Time.from_msg(msg.header.stamp).nanoseconds * 1e-9
        with self.lock:
            self.arrivals.append((now, now - stamp))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        status = status_of(msg, self.diag_name)
        if status is not None:
            with self.lock:
                self.diagnostics = status_values(status)
                self.problem = status.message if status.level == DiagnosticStatus.ERROR else ""

    def failure(self) -> str:
        """The node's own error (e.g. its configure failed), from /diagnostics."""
        with self.lock:
            return self.problem



def _publish_loop(probes: list[_Probe], frames: list[Image], rate_hz: float, stop: threading.Event) -> None:
    """Every camera gets a frame at each tick (cameras triggered together, as on a vehicle)."""
    period, t0, i = 1.0 / rate_hz, time.monotonic(), 0
    while not stop.is_set():
        msg = frames[i % len(frames)]
        for probe in probes:
            msg.header.stamp = probe.node.get_clock().now().to_msg()
            probe.pub.publish(msg)
            with probe.lock:
                probe.sent_times.append(time.time())
        i += 1
        stop.wait(max(0.0, t0 + i * period - time.monotonic()))


def _wait_for(predicate: Any, timeout_s: float, what: str, procs: list[subprocess.Popen],
              log_path: Path | None, failure: Any = lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        problem = failure()
        if problem:
            raise NodeBenchError(f"{NODE_EXECUTABLE} reports: {problem}")
        gone = next((p for p in procs if p.poll() is not None), None)
        if gone is not None:
            raise NodeBenchError(f"{NODE_EXECUTABLE} exited with code {gone.returncode} before {what}"
                                 + (f" (node log: {log_path})" if log_path else ""))
        if time.monotonic() > deadline:
            raise NodeBenchError(f"timed out after {timeout_s:.0f} s waiting for {what}"
                                 + (f" (node log: {log_path})" if log_path else ""))
        time.sleep(0.05)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_node_bench(options: NodeBenchOptions, ros_args: Sequence[str] | None = None) -> NodeBenchResult:
    """Start enhance_node(s), feed each camera `options.rate_hz` frames per second, measure what comes back."""
    options.validate()
    configure_dds_environment()
    frames = [_image_msg(f) for f in night_sequence(options.width, options.height)]
    specs = node_specs(options)
    procs: list[subprocess.Popen] = []
    logs: list[Any] = []
    context = rclpy.Context()
    # Not sys.argv: the command's own `-p name:=value` options are not ROS arguments of this process.
    rclpy.init(args=["dap_led_node_bench", *(ros_args or [])], context=context)
    node = rclpy.create_node("dap_led_node_bench", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    stop = threading.Event()
    publisher: threading.Thread | None = None
    log_path = specs[0].log_path
    try:
        for spec in specs:
            log = open(spec.log_path, "w") if spec.log_path else subprocess.DEVNULL  # noqa: SIM115
            if spec.log_path:
                logs.append(log)
            cmd = spec.command
            try:
                procs.append(subprocess.Popen([_executable(cmd[0]), *cmd[1:]], stdout=log, stderr=subprocess.STDOUT,
                                              env=dict(os.environ)))
            except OSError as exc:
                raise NodeBenchError(f"cannot start {cmd[0]}: {exc} (is the package installed in this "
                                     "environment?)") from exc
        ns = options.namespace.rstrip("/")
        cameras = options.camera_names()
        probes = [_Probe(node, f"{ns}/{c}" if c else ns,
                         specs[i if options.separate_nodes and len(specs) > 1 else 0].diag_name)
                  for i, c in enumerate(cameras)]

        def failure() -> str:
            return next((p.failure() for p in probes if p.failure()), "")

        # Matching both ways before a frame is sent: the node subscribes and publishes once active.
        _wait_for(lambda: all(p.pub.get_subscription_count() > 0 and p.sub.get_publisher_count() > 0
                              for p in probes),
                  options.start_timeout_s, "the node to match the camera topics", procs, log_path, failure)
        publisher = threading.Thread(target=_publish_loop, args=(probes, frames, options.rate_hz, stop), daemon=True)
        publisher.start()
        _wait_for(lambda: all(p.arrivals for p in probes), options.start_timeout_s,
                  "the first restored frame of every camera", procs, log_path, failure)
        time.sleep(options.warmup_s)  # a measurement window, not a synchronisation
        t_start = time.time()
        time.sleep(options.duration_s)
        t_end = time.time()
        memory = [_rss_mib(p.pid) for p in procs]
        windows, sent = [], 0
        for probe in probes:
            with probe.lock:
                windows.append([(t, lat) for t, lat in probe.arrivals if t_start <= t < t_end])
                sent += sum(1 for t in probe.sent_times if t_start <= t < t_end)
        with probes[0].lock:
            diag = dict(probes[0].diagnostics)
    finally:
        stop.set()
        if publisher is not None:
            publisher.join(5.0)
        for proc in procs:
            _stop(proc)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        spinner.join(5.0)
        for log in logs:
            log.close()
    if not all(windows):
        raise NodeBenchError(f"no restored frame arrived in the {options.duration_s:.0f} s window"
                             + (" on some camera" if len(windows) > 1 else ""))

    def fps(window: list[tuple[float, float]]) -> float:
        span = window[-1][0] - window[0][0]
        return (len(window) - 1) / span if len(window) > 1 and span > 0 else 0.0

    per_camera = [round(fps(w), 2) for w in windows]
    lat_ms = 1000.0 * np.asarray([lat for w in windows for _, lat in w])
    return NodeBenchResult(size=f"{options.width}x{options.height}", rate_hz=options.rate_hz, sent=sent,
                           received=sum(len(w) for w in windows), fps_out=round(sum(per_camera), 2),
                           latency_p50_ms=round(float(np.percentile(lat_ms, 50)), 1),
                           latency_p95_ms=round(float(np.percentile(lat_ms, 95)), 1),
                           diagnostics=diag, node_command=specs[0].command, cameras=options.cameras,
                           separate_nodes=options.separate_nodes and options.cameras > 1,
                           per_camera_fps=per_camera, rss_mib=round(sum(m[0] for m in memory), 1),
                           rss_peak_mib=round(sum(m[1] for m in memory), 1))

"""`ManagedImageNode`: the lifecycle node all dap_led_ros image nodes are built on.

What a subclass gets:
- parameters declared at construction from its settings dataclass (`config_class`);
- `on_configure` reads and validates them and calls `load(cfg)` (model, engine...); any
  exception there logs the reason and returns FAILURE, so the node stays unconfigured and
  a later configure can succeed;
- `on_activate` starts the newest-frame-wins worker and calls `create_io(cfg)`, whose
  subscriptions and publishers (made with `add_subscription` / `add_publisher`, with the
  configured QoS) are destroyed again in `on_deactivate`; `on_cleanup`/`on_shutdown` call
  `unload()`;
- `autostart` (default true) configures and activates the node once spinning starts;
- `~/enable` (std_srvs/SetBool), mirrored by the `enabled` parameter: while disabled, frames go
  to `passthrough(msg)` instead of the worker (or nowhere when passthrough_when_disabled is false);
- `/diagnostics` with the lifecycle state, the switch, fps, latency and drop counts;
- throttled error logs for bad frames: the node never dies on one message.
`run_nodes` / `main_for` run nodes until SIGINT/SIGTERM and exit 0 without a stack trace.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import SetBool

from dap_led_ros.imaging.image_encoding import ImageEncodingError
from dap_led_ros.ros import diagnostics
from dap_led_ros.ros.frame_worker import FrameWorker
from dap_led_ros.ros.params import (
    ConfigError,
    ManagedNodeConfig,
    QosSettings,
    config_from_flat,
    declare_node_parameters,
    flat_defaults,
    read_node_parameters,
    unknown_parameter_overrides,
)

CfgT = TypeVar("CfgT", bound=ManagedNodeConfig)

ERROR_LOG_PERIOD_S = 5.0
# At exit, wait this long for a frame in progress (the worker thread is a daemon: after this,
# the process exits without it).


def qos_profile(settings: QosSettings) -> QoSProfile:
    """rclpy QoS profile for validated settings (keep-last history)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=settings.depth,
        reliability=(ReliabilityPolicy.BEST_EFFORT if settings.reliability == "best_effort"
                     else ReliabilityPolicy.RELIABLE),
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if settings.durability == "transient_local"
                    else DurabilityPolicy.VOLATILE),
    )


class ThrottledLog:
    """Logs each distinct message at most once per period (with a count of the ones skipped)."""

    def __init__(self, log: Callable[[str], Any], period_s: float = ERROR_LOG_PERIOD_S,
                 max_keys: int = 256) -> None:
        self._log = log
        self._period_s = period_s
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}  # message -> (last logged, skipped since)

    def __call__(self, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            last, skipped = self._last.get(message, (-1e18, 0))
            if now - last < self._period_s:
                self._last[message] = (last, skipped + 1)
                return
            if len(self._last) >= self._max_keys:
                self._last.clear()
            self._last[message] = (now, 0)
        self._log(f"{message} (x{skipped + 1} in the last {self._period_s:.0f} s)"
                  if skipped else message)


class ManagedImageNode(LifecycleNode, Generic[CfgT]):
    """Lifecycle image node base; see the module docstring for the contract."""

    config_class: type[ManagedNodeConfig] = ManagedNodeConfig

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        declare_node_parameters(self, self.config_class)
        self.cfg: CfgT | None = None  # the validated settings, set by on_configure
        self._worker: FrameWorker[Any] | None = None
        self._io_subscriptions: list[Any] = []
        self._io_publishers: list[Any] = []
        self._io_lock = threading.Lock()
        self._problem = ""  # why the node is not working (shown in diagnostics)
        self._rejected = 0  # malformed frames dropped
        self._rate_skipped = 0  # frames skipped by max_rate_hz
        self._passed_through = 0
        self._next_slot = 0.0
        self._log_error = ThrottledLog(self.get_logger().error)

        try:
            initial = read_node_parameters(self, self.config_class)
        except ConfigError as exc:
            self.get_logger().error(f"invalid parameters: {exc}")
            initial = self.config_class()
        self._enabled = initial.enabled
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._enable_srv = self.create_service(SetBool, "~/enable", self._on_enable)
        self._diag = diagnostics.DiagnosticsPublisher(self)
        self._diag_timer = self.create_timer(initial.diagnostics_period_s, self.publish_diagnostics)
        self._autostart_timer = (self.create_timer(0.0, self._autostart)
                                 if initial.autostart else None)

    # ------------------------------------------------------------------ subclass hooks

    def load(self, cfg: CfgT) -> None:
        """Load models/engines; raise with a clear message on failure."""

    def unload(self) -> None:
        """Free what `load` made (called on cleanup, shutdown, error and after a failed load)."""

    def create_io(self, cfg: CfgT) -> None:
        """Create subscriptions and publishers with add_subscription / add_publisher."""

    def process(self, frame: Any) -> Callable[[], None] | None:
        """Work on one frame (worker thread); raise ImageEncodingError for a malformed frame.
        May return the rest of the work (encode, publish): it then runs on the worker's second
        stage, overlapped with the next frame's processing."""
        raise NotImplementedError

    def passthrough(self, frame: Any) -> None:
        """Republish a frame untouched while disabled (executor or worker thread)."""

    def backend_description(self) -> str:
        return ""

    def extra_diagnostics(self) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ helpers for subclasses

    def add_subscription(self, msg_type: Any, topic: str, callback: Callable[[Any], None]) -> Any:
        """A subscription with the input QoS, destroyed on deactivate."""
        assert self.cfg is not None
        sub = self.create_subscription(msg_type, topic, callback, qos_profile(self.cfg.qos.input))
        self._io_subscriptions.append(sub)
        return sub

    def add_publisher(self, msg_type: Any, topic: str) -> Any:
        """A publisher with the output QoS, destroyed on deactivate."""
        assert self.cfg is not None
        pub = self.create_publisher(msg_type, topic, qos_profile(self.cfg.qos.output))
        self._io_publishers.append(pub)
        return pub

    def submit_frame(self, frame: Any) -> None:
        """Hand an incoming frame on: worker (enabled), passthrough or nothing (disabled)."""
        received_at = time.monotonic()
        cfg, worker = self.cfg, self._worker
        if cfg is None or worker is None:
            return
        if self.divert_if_disabled(frame):
            return
        if cfg.max_rate_hz > 0:
            period = 1.0 / cfg.max_rate_hz
            if received_at < self._next_slot:
                self._rate_skipped += 1
                return
            self._next_slot = max(self._next_slot, received_at - period) + period
        worker.submit(frame, received_at)

    def divert_if_disabled(self, frame: Any) -> bool:
        """While disabled: pass `frame` through (or drop it, by parameter) and return True.

        Besides the subscription callback, `process` calls this before publishing, so that a
        frame already in the worker when the switch goes off is not published processed.
        """
        if self._enabled:
            return False
        if self.cfg is not None and self.cfg.passthrough_when_disabled:
            self._passed_through += 1
            self.passthrough(frame)
        return True

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def state_label(self) -> str:
        """Current lifecycle state: unconfigured, inactive, active, finalized, or a transition."""
        return str(self._state_machine.current_state[1])

    # ------------------------------------------------------------------ lifecycle

    def _autostart(self) -> None:
        if self._autostart_timer is not None:
            self.destroy_timer(self._autostart_timer)
            self._autostart_timer = None
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            cfg = read_node_parameters(self, self.config_class)
            for name in unknown_parameter_overrides(self, self.config_class):
                self.get_logger().warning(f"ignoring unknown parameter '{name}'")
            self.load(cfg)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - any failure is reported, the node lives on
            self._problem = f"configure failed: {exc}"
            self.get_logger().error(self._problem)
            self._safe_unload()
            return TransitionCallbackReturn.FAILURE
        self.cfg = cfg  # type: ignore[assignment]
        self._problem = ""
        self._diag_timer.timer_period_ns = int(cfg.diagnostics_period_s * 1e9)
        self.get_logger().info(f"configured ({self.backend_description() or 'ready'})")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        assert self.cfg is not None
        try:
            self._worker = FrameWorker(self.process, name=f"{self.get_name()}-worker",
                                       on_error=self._on_frame_error)
            self._worker.start()
            # Counters cover the current activation, like the worker's own statistics.
            self._rejected = self._rate_skipped = self._passed_through = 0
            self._next_slot = 0.0
            self.create_io(self.cfg)
        except Exception as exc:  # noqa: BLE001
            self._problem = f"activate failed: {exc}"
            self.get_logger().error(self._problem)
            self._release_io()
            return TransitionCallbackReturn.FAILURE
        self._problem = ""
        self.get_logger().info("active")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_io()
        self.get_logger().info("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._safe_unload()
        self.cfg = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error while {state.label}; releasing everything")
        self.release()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured

    def release(self, worker_timeout_s: float = 30.0) -> None:
        """Stop processing and free everything, whatever the state (also used at exit)."""
        self._release_io(worker_timeout_s)
        self._safe_unload()
        self.cfg = None

    def _release_io(self, worker_timeout_s: float = 30.0) -> None:
        # Inputs first (no new frames), then the worker (finishes its frame), then the outputs.
        with self._io_lock:
            subs, self._io_subscriptions = self._io_subscriptions, []
            pubs, self._io_publishers = self._io_publishers, []
            worker, self._worker = self._worker, None
        for sub in subs:
            _quietly(self.destroy_subscription, sub)
        if worker is not None and not worker.stop(timeout=worker_timeout_s):
            self.get_logger().warning(
                f"the worker did not finish its frame within {worker_timeout_s:.0f} s")
        for pub in pubs:
            _quietly(self.destroy_publisher, pub)

    def _safe_unload(self) -> None:
        try:
            self.unload()
        except Exception as exc:  # noqa: BLE001
            self.get_logger().warning(f"releasing resources failed: {exc}")

    # ------------------------------------------------------------------ enable switch

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        result = self.set_parameters([Parameter("enabled", Parameter.Type.BOOL, request.data)])[0]
        response.success = result.successful
        response.message = ("enabled" if self._enabled else "disabled") if result.successful \
            else result.reason
        return response

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Reject invalid values at once; `enabled` applies now, the rest at the next configure."""
        known = flat_defaults(self.config_class)
        changed = {p.name: p.value for p in params if p.name in known}
        enabled = changed.get("enabled", self._enabled)
        if not isinstance(enabled, bool):
            return SetParametersResult(successful=False,
                                       reason=f"enabled must be a bool, got {enabled!r}")
        if set(changed) - {"enabled"}:
            flat = {name: self.get_parameter(name).value for name in known}
            try:
                config_from_flat(self.config_class, {**flat, **changed})
            except ConfigError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        if enabled != self._enabled:
            self._enabled = enabled
            self.get_logger().info("enabled" if enabled else "disabled")
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ errors and diagnostics

    def _on_frame_error(self, frame: Any, exc: BaseException) -> None:
        if not self.context.ok():
            return  # shutting down: publishers may already be gone
        if isinstance(exc, ImageEncodingError):
            self._rejected += 1
            self._log_error(f"dropped a malformed frame: {exc}")
        else:
            self._log_error(f"failed to process a frame: {type(exc).__name__}: {exc}")

    def publish_diagnostics(self) -> None:
        worker = self._worker
        stats = worker.stats() if worker is not None else None
        state = self.state_label
        values: dict[str, Any] = {
            "state": state,
            "enabled": self._enabled,
            "passthrough_when_disabled": self.cfg.passthrough_when_disabled if self.cfg else "",
            "backend": self.backend_description(),
            **diagnostics.worker_values(stats),
            "rejected": self._rejected,
            "errors": max(0, stats.failed - self._rejected) if stats else 0,
            "rate_skipped": self._rate_skipped,
            "passed_through": self._passed_through,
            **self.extra_diagnostics(),
        }
        if self._problem:
            level, message = diagnostics.ERROR, self._problem
        elif state != "active":
            level, message = diagnostics.WARN, f"{state}: not processing"
        elif not self._enabled:
            level, message = diagnostics.OK, "disabled: " + (
                "passing frames through" if self.cfg and self.cfg.passthrough_when_disabled
                else "publishing nothing")
        else:
            level, message = diagnostics.OK, "processing"
        self._diag.publish(level, message, values)


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    """Run a release step that may fail once the context is shut down; keep releasing."""
    try:
        fn(*args)
    except Exception:  # noqa: BLE001
        pass


# ----------------------------------------------------------------------------- entry points


# Longest wait between checks for a stop signal while spinning.

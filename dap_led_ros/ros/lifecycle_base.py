"""`ManagedImageNode`: the lifecycle node all dap_led_ros image nodes are built on.

What a subclass gets:
- parameters declared at construction from its settings dataclass (`config_class`);
- `on_configure` reads and validates them and calls `load(cfg)` (model, engine...); any
  exception there logs the reason and returns FAILURE, so the node stays unconfigured and
  a later configure can succeed;
- `on_configure` then calls `create_outputs(cfg)`, whose lifecycle publishers (`add_publisher`,
  output QoS) stay in the graph until cleanup and publish only while active;
- `on_activate` starts the newest-frame-wins worker and calls `create_io(cfg)`, whose
  subscriptions (`add_subscription`, input QoS) are destroyed again in `on_deactivate`;
  `on_cleanup`/`on_shutdown` destroy the publishers and call `unload()`;
- `autostart` (default true) configures and activates the node once spinning starts;
- `~/enable` (std_srvs/SetBool), mirrored by the `enabled` parameter: while disabled, frames go
  to `passthrough(msg)` instead of the worker (or nowhere when passthrough_when_disabled is false);
- `/diagnostics` with the lifecycle state, the switch, fps, latency and drop counts, WARN while
  input arrives faster than the node keeps up with ("overloaded: ...");
- log lines escaped and cut (`log_safety`), error logs for bad frames throttled per kind of
  problem: the node never dies on one message;
- callback groups that keep the services answering under a flood and during a transition, when
  spun by a MultiThreadedExecutor (as `runner.run_nodes` does): frames in one group, transitions
  (change_state, autostart) in another, lifecycle queries reentrant, ~/enable and the parameter
  services in the node's default group, timers in their own.
`ros/runner.py` (`run_nodes`, `main_for`) runs nodes until SIGINT/SIGTERM and exits 0 without a
stack trace.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from lifecycle_msgs.srv import ChangeState
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import CallbackGroup, MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import SetBool

from dap_led_ros.imaging.image_encoding import ImageEncodingError
from dap_led_ros.ros import diagnostics
from dap_led_ros.ros.cv_bridge_conversion import conversion_summary
from dap_led_ros.ros.frame_worker import FrameWorker, per_frame
from dap_led_ros.ros.input_subscription import AUTO, InputSubscription
from dap_led_ros.ros.log_safety import ERROR_LOG_PERIOD_S, SafeLogger, ThrottledLog, exception_kind
from dap_led_ros.ros.params import (
    MAX_DIAGNOSTICS_PERIOD_S,
    MIN_DIAGNOSTICS_PERIOD_S,
    ConfigError,
    ManagedNodeConfig,
    QosSettings,
    config_from_flat,
    declare_node_parameters,
    flat_defaults,
    qos_overrides_message,
    read_node_parameters,
    unknown_parameter_overrides,
    unknown_parameters_message,
)

CfgT = TypeVar("CfgT", bound=ManagedNodeConfig)

__all__ = ["ERROR_LOG_PERIOD_S", "ManagedImageNode", "ThrottledLog", "qos_profile"]

# release() waits this long for a transition in progress (a model loading) before freeing.
TRANSITION_WAIT_S = 60.0
# How often inputs with reliability auto re-read their publishers' QoS from the graph.
INPUT_QOS_REFRESH_S = 0.25


def qos_profile(settings: QosSettings) -> QoSProfile:
    """rclpy QoS profile for validated settings (keep-last history)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=settings.depth,
        reliability=(ReliabilityPolicy.RELIABLE if settings.reliability == "reliable"
                     else ReliabilityPolicy.BEST_EFFORT),  # auto starts best effort (input_subscription)
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if settings.durability == "transient_local"
                    else DurabilityPolicy.VOLATILE),
    )


class ManagedImageNode(LifecycleNode, Generic[CfgT]):
    """Lifecycle image node base; see the module docstring for the contract."""

    config_class: type[ManagedNodeConfig] = ManagedNodeConfig
    # What the node does to a frame, for the overload message ("restored 4.1 fps").
    output_verb = "processed"

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        # Callback groups (see the module docstring); the lifecycle services are made by
        # LifecycleNode in the default group and moved here.
        self._transition_group = MutuallyExclusiveCallbackGroup()
        self._query_group = ReentrantCallbackGroup()
        self._frame_group = MutuallyExclusiveCallbackGroup()
        self._timer_group = MutuallyExclusiveCallbackGroup()
        for srv in self.services:
            if srv.srv_type is ChangeState:
                _move_to_group(srv, self._transition_group)
            elif srv.srv_type.__module__.startswith("lifecycle_msgs"):
                _move_to_group(srv, self._query_group)
        # Held by every transition and by release(): an exit never frees what a transition on
        # another executor thread is still making.
        self._transition_lock = threading.RLock()
        self._closing = False
        declare_node_parameters(self, self.config_class)
        self.cfg: CfgT | None = None  # the validated settings, set by on_configure
        self._worker: FrameWorker[Any] | None = None
        self._io_subscriptions: list[Any] = []
        self._frame_inputs: list[Any] = []  # the subscriptions of _io_subscriptions that carry frames
        self._io_publishers: list[Any] = []
        self._io_lock = threading.Lock()
        self._problem = ""  # why the node is not working (shown in diagnostics)
        self._rejected = 0  # malformed frames dropped
        self._rate_skipped = 0  # frames skipped by max_rate_hz
        self._passed_through = 0
        self._next_slots: dict[str | None, float] = {}  # max_rate_hz: next free slot per camera
        self._log_error = ThrottledLog(self.get_logger().error)

        autostart, enabled, period = self._initial_settings()
        self._enabled = enabled
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # The node's default group, with the parameter services.
        self._enable_srv = self.create_service(SetBool, "~/enable", self._on_enable)
        self._diag = diagnostics.DiagnosticsPublisher(self)
        self._stamp_delays = diagnostics.StampDelays()
        self._last_frame_id = ""
        self._diag_timer = self.create_timer(period, self.publish_diagnostics,
                                             callback_group=self._timer_group)
        # qos.input.reliability auto: the inputs follow their publishers' reliability.
        self._qos_timer = self.create_timer(INPUT_QOS_REFRESH_S, self._refresh_inputs,
                                            callback_group=self._frame_group)
        self._autostart_timer = (self.create_timer(0.0, self._autostart,
                                                   callback_group=self._transition_group)
                                 if autostart else None)
        self.preload()

    def get_logger(self) -> Any:
        """The node's logger, escaping and cutting every line (log_safety.SafeLogger)."""
        safe = self.__dict__.get("_safe_logger")
        if safe is None:
            safe = self.__dict__["_safe_logger"] = SafeLogger(super().get_logger())
        return safe

    def _initial_settings(self) -> tuple[bool, bool, float]:
        """autostart, enabled and the diagnostics period at construction; each one that is
        invalid takes its default (configure then reports the problem)."""
        defaults = self.config_class()
        try:
            cfg = read_node_parameters(self, self.config_class)
            return cfg.autostart, cfg.enabled, cfg.diagnostics_period_s
        except ConfigError as exc:
            self.get_logger().error(f"invalid parameters: {exc}")

        def value(name: str, ok: Callable[[Any], bool], default: Any) -> Any:
            v = self.get_parameter(name).value
            return v if ok(v) else default

        is_bool = lambda v: isinstance(v, bool)  # noqa: E731
        period = value("diagnostics_period_s", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                       and MIN_DIAGNOSTICS_PERIOD_S <= v <= MAX_DIAGNOSTICS_PERIOD_S,
                       defaults.diagnostics_period_s)
        return (value("autostart", is_bool, defaults.autostart), value("enabled", is_bool, defaults.enabled),
                float(period))

    # ------------------------------------------------------------------ subclass hooks

    def load(self, cfg: CfgT) -> None:
        """Load models/engines; raise with a clear message on failure."""

    def preload(self) -> None:
        """Import, before spinning, the heavy modules `load` will need: importing an extension
        module holds the GIL for up to half a second, which would stall the services if it
        happened during configure. Failures are left to configure to report."""

    def unload(self) -> None:
        """Free what `load` made (called on cleanup, shutdown, error and after a failed load)."""

    def create_outputs(self, cfg: CfgT) -> None:
        """Create the publishers with add_publisher (on configure; lifecycle publishers: they stay
        in the graph while inactive and publish only while active)."""

    def create_io(self, cfg: CfgT) -> None:
        """Create the subscriptions with add_subscription (on activate)."""

    def process(self, frame: Any) -> Callable[[], None] | None:
        """Work on one frame (worker thread); raise ImageEncodingError for a malformed frame.
        May return the rest of the work (encode, publish): it then runs on the worker's second
        stage, overlapped with the next frame's processing. Used by the default `process_items`."""
        raise NotImplementedError

    def process_items(self, items: list[tuple[str, Any]]) -> list[object]:
        """Work on the frames the worker took together, one (camera key, frame) per camera: per
        item None (done), its rest (a callable) or an Exception. Default: `process` per frame."""
        return per_frame(self.process)(items)

    def passthrough(self, frame: Any) -> None:
        """Republish a frame untouched while disabled (executor or worker thread)."""

    def backend_description(self) -> str:
        return ""

    def extra_diagnostics(self) -> dict[str, Any]:
        return {}

    def extra_statuses(self) -> list[diagnostics.Status]:
        """More /diagnostics statuses beside the node's own (one per camera of a multi-camera node)."""
        return []

    def worker_options(self) -> dict[str, Any]:
        """FrameWorker settings of an activation beyond the defaults (one camera): a node serving
        several cameras gives `keys`, `batch_window_s` and `max_batch`."""
        return {}

    def make_worker(self) -> FrameWorker[Any]:
        """The frame worker of an activation: newest frame wins per camera, over `process_items`."""
        return FrameWorker(self.process_items, name=f"{self.get_name()}-worker",
                           on_error=lambda key, frame, exc: self._on_frame_error(frame, exc),
                           **self.worker_options())

    def frame_key(self, frame: Any) -> str:
        """The camera a frame belongs to ("": the node's only camera); rate limits and the
        worker's newest-frame-wins slot are per camera."""
        return ""

    # ------------------------------------------------------------------ helpers for subclasses

    def add_subscription(self, msg_type: Any, topic: str, callback: Callable[[Any], None],
                         frames: bool = True) -> Any:
        """A subscription with the input QoS, destroyed on deactivate; its callback runs in the
        frames' callback group and an exception there is logged, never raised to the executor.
        `frames`: it carries the frames (not camera_info); its matched publishers are counted in
        /diagnostics as `input_publishers`."""
        assert self.cfg is not None

        def guarded(msg: Any) -> None:
            try:
                callback(msg)
            except Exception as exc:  # noqa: BLE001 - one message must not end the node
                if self.context.ok():
                    self._log_error(f"failed to handle a message on {topic}: {type(exc).__name__}: {exc}",
                                    key=f"{topic}|{exception_kind(exc)}")

        settings = self.cfg.qos.input
        sub = InputSubscription(self, msg_type, topic, guarded, qos_profile(settings), self._frame_group,
                                follow_publishers=settings.reliability == AUTO)
        with self._io_lock:
            self._io_subscriptions.append(sub)
            if frames:
                self._frame_inputs.append(sub)
        return sub

    def add_publisher(self, msg_type: Any, topic: str, cfg: Any,
                      on_matched: Callable[[Any], None] | None = None) -> Any:
        """A lifecycle publisher with the output QoS of `cfg` (made on configure, activated and
        deactivated with the node, destroyed on cleanup). on_matched(info) runs in the frames'
        callback group when a subscriber matches or leaves (rclpy QoSPublisherMatchedInfo)."""
        events = PublisherEventCallbacks(matched=on_matched) if on_matched is not None else None
        pub = self.create_lifecycle_publisher(msg_type, topic, qos_profile(cfg.qos.output),
                                              event_callbacks=events, callback_group=self._frame_group)
        self._io_publishers.append(pub)
        return pub

    def submit_frame(self, frame: Any) -> None:
        """Hand an incoming frame on: worker (enabled), passthrough or nothing (disabled)."""
        received_at = time.monotonic()
        cfg, worker = self.cfg, self._worker
        if cfg is None or worker is None:
            return
        header = getattr(getattr(frame, "msg", frame), "header", None)
        if header is not None:  # TimeStampStatus: stamp to arrival, on the node's clock
            self._last_frame_id = header.frame_id
            now_ns = self.get_clock().now().nanoseconds
            self._stamp_delays.add((now_ns - (header.stamp.sec * 1_000_000_000 + header.stamp.nanosec)) / 1e9)
        if self.divert_if_disabled(frame):
            return
        key = self.frame_key(frame)
        if cfg.max_rate_hz > 0:
            period = 1.0 / cfg.max_rate_hz
            slot = self._next_slots.get(key, 0.0)
            if received_at < slot:
                self._rate_skipped += 1
                return
            self._next_slots[key] = max(slot, received_at - period) + period
        worker.submit(frame, received_at, key=key)

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
        # On an executor thread of the transitions group: the services answer meanwhile.
        timer, self._autostart_timer = self._autostart_timer, None
        if timer is None:
            return
        self.destroy_timer(timer)
        if self._closing or self.state_label != "unconfigured":
            return
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS and not self._closing:
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._transition_lock:
            return self._configure()

    def _configure(self) -> TransitionCallbackReturn:
        try:
            cfg = read_node_parameters(self, self.config_class)
            unknown = unknown_parameter_overrides(self, self.config_class)
            if unknown:
                raise ConfigError(unknown_parameters_message(unknown, flat_defaults(self.config_class)))
            refused = qos_overrides_message(self)
            if refused:
                raise ConfigError(refused)
            self.load(cfg)  # type: ignore[arg-type]
            self.create_outputs(cfg)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - any failure is reported, the node lives on
            self._problem = f"configure failed: {exc}"
            self.get_logger().error(self._problem)
            self._release_outputs()
            self._safe_unload()
            return TransitionCallbackReturn.FAILURE
        self.cfg = cfg  # type: ignore[assignment]
        self._problem = ""
        self._diag_timer.timer_period_ns = int(cfg.diagnostics_period_s * 1e9)
        self.get_logger().info(f"configured ({self.backend_description() or 'ready'})")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._transition_lock:
            if self._closing or self.cfg is None:
                return TransitionCallbackReturn.FAILURE
            if self._activate() != TransitionCallbackReturn.SUCCESS:
                return TransitionCallbackReturn.FAILURE
        return super().on_activate(state)

    def _activate(self) -> TransitionCallbackReturn:
        assert self.cfg is not None
        try:
            self._worker = self.make_worker()
            self._worker.start()
            # Counters cover the current activation, like the worker's own statistics.
            self._rejected = self._rate_skipped = self._passed_through = 0
            self._next_slots = {}
            self.create_io(self.cfg)
        except Exception as exc:  # noqa: BLE001
            self._problem = f"activate failed: {exc}"
            self.get_logger().error(self._problem)
            self._release_io()
            return TransitionCallbackReturn.FAILURE
        self._problem = ""
        self.get_logger().info("active")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._transition_lock:
            self._release_io()
        self.get_logger().info("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._transition_lock:
            self._release_outputs()
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

    def closing(self) -> None:
        """The process is ending: no transition activates anything from now on."""
        self._closing = True

    def release(self, worker_timeout_s: float = 30.0) -> None:
        """Stop processing and free everything, whatever the state (also used at exit). A
        transition in progress on another thread (a model loading) is waited for first."""
        locked = self._transition_lock.acquire(timeout=TRANSITION_WAIT_S)
        try:
            self._release_io(worker_timeout_s)
            self._release_outputs()
            self._safe_unload()
            self.cfg = None
        finally:
            if locked:
                self._transition_lock.release()

    def _release_io(self, worker_timeout_s: float = 30.0) -> None:
        # Inputs first (no new frames), then the worker (finishes its frame); the lifecycle
        # publishers stay (deactivated by LifecycleNode) until cleanup.
        with self._io_lock:
            subs, self._io_subscriptions = self._io_subscriptions, []
            self._frame_inputs = []
            worker, self._worker = self._worker, None
        for sub in subs:
            _quietly(sub.destroy)
        if worker is not None and not worker.stop(timeout=worker_timeout_s):
            self.get_logger().warning(
                f"the worker did not finish its frame within {worker_timeout_s:.0f} s")

    def _release_outputs(self) -> None:
        """Destroy the lifecycle publishers (cleanup, shutdown, a failed configure)."""
        with self._io_lock:
            pubs, self._io_publishers = self._io_publishers, []
        for pub in pubs:
            _quietly(self.destroy_lifecycle_publisher, pub)

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
            reason = self._change_problem(known, changed)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        if enabled != self._enabled:
            self._enabled = enabled
            self.get_logger().info("enabled" if enabled else "disabled")
        return SetParametersResult(successful=True)

    def _change_problem(self, known: dict[str, Any], changed: dict[str, Any]) -> str:
        """Why a runtime change is refused ("" to accept): a value that is invalid on its own
        (type, range, choice), or one that makes a valid configuration invalid. A change to a
        configuration that is already invalid is accepted when it is fine itself, so that
        several bad values can be fixed one at a time."""
        current = {name: self.get_parameter(name).value for name in known}
        try:
            config_from_flat(self.config_class, {**known, **changed})
        except ConfigError as exc:
            return str(exc)
        try:
            config_from_flat(self.config_class, {**current, **changed})
        except ConfigError as exc:
            try:
                config_from_flat(self.config_class, current)
            except ConfigError:
                return ""
            return str(exc)
        return ""

    # ------------------------------------------------------------------ errors and diagnostics

    def _on_frame_error(self, frame: Any, exc: BaseException) -> None:
        if not self.context.ok():
            return  # shutting down: publishers may already be gone
        # Throttled per kind of problem (class + message with its values masked), not per text.
        if isinstance(exc, ImageEncodingError):
            self._rejected += 1
            self._log_error(f"dropped a malformed frame: {exc}", key=exception_kind(exc))
        else:
            self._log_error(f"failed to process a frame: {type(exc).__name__}: {exc}",
                            key=exception_kind(exc))

    def _refresh_inputs(self) -> None:
        """qos.input.reliability auto: re-subscribe an input whose publishers' reliability changed
        (in the frames' callback group, so never while a frame callback runs)."""
        with self._io_lock:
            subs = [s for s in self._io_subscriptions if s.follow_publishers]
        for sub in subs:
            try:
                if sub.refresh():
                    self.get_logger().info(f"input {sub.topic_name}: publishers offer "
                                           f"{sub.reliability}; subscribed {sub.reliability}")
            except Exception as exc:  # noqa: BLE001 - destroyed by a transition meanwhile
                if self.context.ok() and sub.subscription is not None:
                    self._log_error(f"cannot follow the publishers' QoS on {sub.topic_name}: {exc}",
                                    key="input-qos")

    def input_reliability(self) -> str:
        """The frame inputs' reliability now ("reliable", "best_effort"; "(auto)" when following)."""
        with self._io_lock:
            subs = list(self._frame_inputs)
        if not subs:
            return ""
        kinds = ",".join(sorted({s.reliability for s in subs}))
        return kinds + (" (auto)" if any(s.follow_publishers for s in subs) else "")

    def input_publishers(self) -> int:
        """Publishers matched by the frame input subscriptions (0 while inactive)."""
        with self._io_lock:
            subs = list(self._frame_inputs)
        return diagnostics.matched_publishers(subs)

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
            "log_suppressed": self._log_error.suppressed,
            # Publishers this node's frame inputs have matched (its own side of the match: a frame
            # sent before it counts one is lost on a best-effort input).
            "input_publishers": self.input_publishers(),
            "input_reliability": self.input_reliability(),
            "image_conversion": conversion_summary(),  # cv_bridge or the package's own (logged once)
            **self.extra_diagnostics(),
            # diagnostic_updater's FrequencyStatus and TimeStampStatus keys, for tools that read those.
            **diagnostics.frequency_values(stats),
            **self._stamp_delays.take(),
        }
        overload = diagnostics.overload_message(stats, self.output_verb) \
            if state == "active" and self._enabled else ""
        values["overloaded"] = bool(overload)
        if self._problem:
            level, message = diagnostics.ERROR, self._problem
        elif state != "active":
            level, message = diagnostics.WARN, f"{state}: not processing"
        elif not self._enabled:
            level, message = diagnostics.OK, "disabled: " + (
                "passing frames through" if self.cfg and self.cfg.passthrough_when_disabled
                else "publishing nothing")
        elif overload:
            level, message = diagnostics.WARN, overload
        else:
            level, message = diagnostics.OK, "processing"
        self._diag.hardware_id = (self.cfg.hardware_id if self.cfg and self.cfg.hardware_id
                                  else self._last_frame_id)
        self._diag.publish(level, message, values, self.extra_statuses())


def _move_to_group(entity: Any, group: CallbackGroup) -> None:
    """Put an executor entity (a service made by rclpy) into another callback group."""
    entity.callback_group = group
    group.add_entity(entity)


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    """Run a release step that may fail once the context is shut down; keep releasing."""
    try:
        fn(*args)
    except Exception:  # noqa: BLE001
        pass

"""`dap-led pipeline`: enhance_node, detect_node and depth_node in one process, no `ros2 launch`.

For pip-only installs. The nodes are the same classes the console scripts run, configured from
the same ROS 2 params file (sections `/**/enhance_node`, `/**/detect_node`, `/**/depth_node`,
see config/pipeline.yaml) and wired by the same `plan_nodes` that launch/enhance.launch.py
uses: the camera feeds enhance_node, depth_node and detect_node read the enhanced topic. They
spin in one executor (runner.node_executor; each node processes frames on its own worker thread).

Options that mirror the launch arguments (camera topic, namespace, autostart, QoS, backend...)
override the params file only when given. Anything after `--ros-args` goes to ROS unchanged.
"""
from __future__ import annotations

import importlib
import posixpath
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class NodeKind:
    module: str
    class_name: str
    executable: str  # console script (ros2 run / launch)
    node_name: str   # also the params file section: /**/<node_name>
    enhanced_camera_info: bool  # publishes or reads the camera_info beside the enhanced image


NODE_KINDS: dict[str, NodeKind] = {  # in start order
    "enhance": NodeKind("dap_led_ros.ros.enhance_node", "EnhanceNode", "enhance_node",
                        "enhance_node", enhanced_camera_info=True),
    "detect": NodeKind("dap_led_ros.ros.detect_node", "DetectNode", "detect_node", "detect_node",
                       enhanced_camera_info=False),
    "depth": NodeKind("dap_led_ros.ros.depth_node", "DepthNode", "depth_node", "depth_node",
                      enhanced_camera_info=True),
}
PARAMS_FILE = "pipeline.yaml"
CAMERA_TOPIC = "image_raw"          # enhance_node's input (relative to the namespace)
ENHANCED_TOPIC = "enhanced/image"   # enhance_node's output = depth/detect input
RELIABILITIES = ("best_effort", "reliable")
DETECT_TOPIC = "detect/image"       # enhance_node's routed output (runtime/detect_route.py)
# What detect_node reads: routed (enhance_node's detect/image: restored where the perception benchmark
# showed restoration raises recall, the camera frame elsewhere; docs/evaluation.md), the restored
# frames always, or the camera's own.
DETECT_INPUTS = ("routed", "enhanced", "camera")
ENHANCE_OVERRIDES = ("model", "backend", "device", "engine", "cameras", "input_transport")  # enhance_node's


class PipelineError(RuntimeError):
    """The command line, launch arguments or params file ask for something that cannot run."""


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got '{text}'")


def camera_info_topic(image_topic: str) -> str:
    """The camera_info beside an image topic (image_transport's convention)."""
    return posixpath.join(posixpath.dirname(image_topic), "camera_info")


@dataclass
class PipelineOptions:
    """What `dap-led pipeline` options and launch arguments choose. None: the params file's."""

    nodes: str = "enhance,detect"  # depth needs a model the user supplies
    camera_topic: str = CAMERA_TOPIC
    enhanced_topic: str = ENHANCED_TOPIC
    autostart: bool | None = None
    input_reliability: str | None = None
    input_depth: int | None = None
    output_reliability: str | None = None
    output_depth: int | None = None
    model: str | None = None     # enhance_node's parameters of the same names
    backend: str | None = None
    device: str | None = None
    engine: str | None = None
    cameras: str | None = None   # several cameras on one enhance_node; detect/depth run per camera
    input_transport: str | None = None
    detect_input: str = "routed"  # DETECT_INPUTS: detect_node on the routed, restored or camera frames
    detector_model: str | None = None  # detect_node's model, told to enhance_node (its routing threshold)

    def camera_names(self) -> list[str]:
        return [c.strip().strip("/") for c in (self.cameras or "").split(",") if c.strip().strip("/")]

    def node_kinds(self) -> list[str]:
        kinds = [k.strip() for k in self.nodes.split(",") if k.strip()]
        if not kinds or any(k not in NODE_KINDS for k in kinds):
            raise PipelineError(f"nodes: a comma-separated subset of {', '.join(NODE_KINDS)}; "
                                f"got '{self.nodes}'")
        return [k for k in NODE_KINDS if k in kinds]  # start order, no duplicates

    def qos_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for side in ("input", "output"):
            reliability = getattr(self, f"{side}_reliability")
            depth = getattr(self, f"{side}_depth")
            if reliability is not None:
                if reliability not in RELIABILITIES:
                    raise PipelineError(f"{side} reliability must be one of "
                                        f"{', '.join(RELIABILITIES)}; got '{reliability}'")
                out[f"qos.{side}.reliability"] = reliability
            if depth is not None:
                if depth < 1:
                    raise PipelineError(f"{side} depth must be >= 1, got {depth}")
                out[f"qos.{side}.depth"] = depth
        return out


@dataclass
class NodePlan:
    """One node to start: which, its remaps (from, to) and the parameters set over the file."""

    kind: str
    remaps: list[tuple[str, str]] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    camera: str = ""  # detect/depth beside a multi-camera enhance_node: that camera's namespace

    def namespace(self, base: str) -> str:
        """The node's namespace under the pipeline's `base`."""
        if not self.camera:
            return base
        return posixpath.join("/" + base.strip("/") if base.strip("/") else "/", self.camera)

    @property
    def spec(self) -> NodeKind:
        return NODE_KINDS[self.kind]

    def node_class(self) -> type:
        return getattr(importlib.import_module(self.spec.module), self.spec.class_name)


def plan_nodes(options: PipelineOptions) -> list[NodePlan]:
    """The nodes to start and how they are wired (no ROS needed; the launch file uses it too)."""
    common: dict[str, Any] = dict(options.qos_overrides())
    if options.autostart is not None:
        common["autostart"] = options.autostart
    moved = options.enhanced_topic != ENHANCED_TOPIC  # both ends of it move together
    if options.detect_input not in DETECT_INPUTS:
        raise PipelineError(f"detect_input: one of {', '.join(DETECT_INPUTS)}; got '{options.detect_input}'")
    cameras = options.camera_names()
    if cameras and (moved or options.camera_topic != CAMERA_TOPIC):
        raise PipelineError("cameras: each camera reads <camera>/image_raw and publishes <camera>/enhanced/image; "
                            "camera_topic and enhanced_topic cannot be moved with several cameras")
    plans = []
    for kind in options.node_kinds():
        camera_fed = kind == "detect" and options.detect_input == "camera"
        routed = kind == "detect" and options.detect_input == "routed"
        settings = dict(common)
        if kind == "detect" and options.detector_model is not None:
            settings["model"] = options.detector_model
        if kind != "enhance" and cameras:  # one detect/depth node per camera, in its namespace
            remaps = [(ENHANCED_TOPIC, CAMERA_TOPIC)] if camera_fed else [(ENHANCED_TOPIC, DETECT_TOPIC)] if routed else []
            plans += [NodePlan(kind, list(remaps), dict(settings), camera=c) for c in cameras]
            continue
        plan = NodePlan(kind, [], settings)
        if camera_fed:
            plan.remaps.append((ENHANCED_TOPIC, options.camera_topic))
        elif routed:
            plan.remaps.append((ENHANCED_TOPIC, DETECT_TOPIC))
        elif moved:
            plan.remaps.append((ENHANCED_TOPIC, options.enhanced_topic))
            if plan.spec.enhanced_camera_info:
                plan.remaps.append((camera_info_topic(ENHANCED_TOPIC),
                                    camera_info_topic(options.enhanced_topic)))
        if kind == "enhance":
            if options.camera_topic != CAMERA_TOPIC:
                plan.remaps += [(CAMERA_TOPIC, options.camera_topic),
                                (camera_info_topic(CAMERA_TOPIC),
                                 camera_info_topic(options.camera_topic))]
            plan.overrides.update({name: getattr(options, name) for name in ENHANCE_OVERRIDES
                                   if getattr(options, name) is not None})
            if options.detector_model is not None and "detect" in options.node_kinds():
                plan.overrides["detector_model"] = options.detector_model
        plans.append(plan)
    return plans


def default_params_file() -> Path:
    """config/pipeline.yaml: colcon share dir, pip's data_files (<prefix>/share), or the checkout."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("dap_led_ros")) / "config")
    except Exception:  # noqa: BLE001 - not a colcon install / no ament_index_python
        pass
    candidates += [Path(sys.prefix) / "share" / "dap_led_ros" / "config",
                   Path(__file__).resolve().parents[2] / "config"]  # a checkout (editable install)
    for folder in candidates:
        if (folder / PARAMS_FILE).is_file():
            return folder / PARAMS_FILE
    raise PipelineError(f"no {PARAMS_FILE} found in {', '.join(map(str, candidates))}; "
                        f"pass --params")


def with_file_settings(options: PipelineOptions, params: Path, namespace: str = "") -> PipelineOptions:
    """`options`, with what the params file says where the options leave it open: enhance_node's
    `cameras` (detect/depth are planned per camera either way) and detect_node's `model` (enhance_node
    routes detect/image by the threshold measured for that detector)."""
    from dataclasses import replace

    from dap_led_ros.ros.params import ConfigError, read_params_file

    try:
        if options.cameras is None:
            cameras = read_params_file(params, NODE_KINDS["enhance"].node_name, namespace).get("cameras")
            if isinstance(cameras, str) and cameras.strip():
                options = replace(options, cameras=cameras)
        if options.detector_model is None:
            model = read_params_file(params, NODE_KINDS["detect"].node_name, namespace).get("model")
            if isinstance(model, str) and model.strip():
                options = replace(options, detector_model=model.strip())
    except ConfigError as exc:
        raise PipelineError(str(exc)) from None
    return options


def check_params_file(path: Path) -> None:
    """A readable YAML mapping (rcl parses it for real; this gives a clearer message first)."""
    from dap_led_ros.ros.params import ConfigError, read_params_document

    try:
        doc = read_params_document(path)
    except ConfigError as exc:
        raise PipelineError(str(exc)) from None
    if not doc:
        raise PipelineError(f"params file {path} is empty")


# ----------------------------------------------------------------------------- running

def _check_startable(nodes: Sequence[Any]) -> None:
    """Nodes that will autostart must have valid parameters; others may get them later."""
    from dap_led_ros.ros.params import ConfigError, read_node_parameters

    for node in nodes:
        if not node.get_parameter("autostart").value:
            continue
        try:
            read_node_parameters(node, node.config_class)
        except ConfigError as exc:
            raise PipelineError(f"{node.get_fully_qualified_name()}: {exc}") from None


def _make_node(plan: NodePlan, namespace: str) -> Any:
    from rclpy.parameter import Parameter

    remaps = [arg for src, dst in plan.remaps for arg in ("-r", f"{src}:={dst}")]
    namespace = plan.namespace(namespace)
    return plan.node_class()(
        plan.spec.node_name, namespace=namespace or None,
        cli_args=["--ros-args", *remaps] if remaps else None,
        parameter_overrides=[Parameter(k, value=v) for k, v in plan.overrides.items()])

def run_pipeline(plans: Sequence[NodePlan], params: Path, namespace: str = "",
                 ros_args: Sequence[str] = ()) -> int:
    """Start the planned nodes and spin them until SIGINT/SIGTERM; returns the exit code."""
    from dap_led_ros.ros.runner import NodeStartError, run_nodes

    def started(nodes: list[Any]) -> None:
        try:
            _check_startable(nodes)
        except PipelineError as exc:
            raise NodeStartError(str(exc)) from None
        names = ", ".join(n.get_fully_qualified_name() for n in nodes)
        nodes[0].get_logger().info(f"pipeline running {names} (params {params})")

    return run_nodes([lambda plan=plan: _make_node(plan, namespace) for plan in plans],
                     args=["dap-led", "--ros-args", "--params-file", str(params), *ros_args],
                     on_started=started)

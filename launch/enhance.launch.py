"""Launch enhance_node, with detect_node and depth_node on its output, as lifecycle nodes.

    ros2 launch dap_led_ros enhance.launch.py camera_topic:=/front/image_raw namespace:=/front \
        nodes:=enhance,detect,depth depth_model:=/models/depth_anything_v2_vits.onnx
    # four cameras on one model (/car/front/image_raw ...), a detect_node per camera:
    ros2 launch dap_led_ros enhance.launch.py namespace:=/car cameras:=front,rear,left,right

Wiring and overrides come from `dap_led_ros.ros.pipeline.plan_nodes`, the same code that wires
`dap-led pipeline`, so both start the same nodes the same way. Empty arguments keep the
params file's value. `ros2 launch dap_led_ros enhance.launch.py --show-args` lists them all.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = "dap_led_ros"



def _option_defaults() -> object:
    """PipelineOptions(): the one source of the wiring defaults, shared with `dap-led pipeline`."""
    from dap_led_ros.ros.pipeline import PipelineOptions

    return PipelineOptions()


_DEFAULTS = _option_defaults()

# name -> (default, description). "" keeps what the params file says.
ARGUMENTS: dict[str, tuple[str, str]] = {
    "namespace": ("", "namespace of all nodes, e.g. /front_cam"),
    "nodes": (_DEFAULTS.nodes, "comma-separated nodes to start: enhance, detect, depth"),
    "camera_topic": (_DEFAULTS.camera_topic, "enhance_node's input image; camera_info is taken beside it"),
    "enhanced_topic": (_DEFAULTS.enhanced_topic, "topic enhance_node publishes and detect/depth read"),
    "cameras": ("", "several cameras on one enhance_node, e.g. front,rear,left,right (topics under "
                    "<namespace>/<camera>/); detect/depth then run once per camera"),
    "input_transport": ("", "enhance_node input: raw (image_raw) | compressed (image_raw/compressed)"),
    "params_file": ("", "ROS 2 params file for all nodes; empty: the package's "
                        "config/pipeline.yaml"),
    "autostart": ("", "true: configure+activate at start; false: wait for a lifecycle manager"),
    "model": ("", "enhance_node model: auto | quality | realtime | a checkpoint (.safetensors); "
                  "empty: the node's default (auto: the real-time model on the CPU)"),
    "backend": ("", "enhance_node backend: auto | torch | onnxruntime | tensorrt"),
    "device": ("", "enhance_node device: cpu | cuda | cuda:N"),
    "engine": ("", "enhance_node ONNX model / TensorRT engine path"),
    "depth_model": ("", "depth_node ONNX model (required when depth runs)"),
    "input_reliability": ("", "QoS of the nodes' subscriptions: best_effort | reliable"),
    "input_depth": ("", "QoS queue depth of the nodes' subscriptions"),
    "output_reliability": ("", "QoS of the nodes' publishers: best_effort | reliable"),
    "output_depth": ("", "QoS queue depth of the nodes' publishers"),
}


def pipeline_options(values: dict[str, str]) -> object:
    """PipelineOptions from launch argument strings ("" = keep the params file's value)."""
    from dap_led_ros.ros.pipeline import PipelineOptions, parse_bool

    def given(name: str) -> str | None:
        value = values.get(name, "").strip()
        return value or None

    def number(name: str) -> int | None:
        value = given(name)
        return int(value) if value is not None else None

    autostart = given("autostart")
    return PipelineOptions(
        nodes=values["nodes"], camera_topic=values["camera_topic"],
        enhanced_topic=values["enhanced_topic"],
        autostart=parse_bool(autostart) if autostart is not None else None,
        input_reliability=given("input_reliability"), input_depth=number("input_depth"),
        output_reliability=given("output_reliability"), output_depth=number("output_depth"),
        model=given("model"), backend=given("backend"), device=given("device"),
        engine=given("engine"), cameras=given("cameras"), input_transport=given("input_transport"))


def default_params_file() -> str:
    from ament_index_python.packages import get_package_share_directory

    return str(Path(get_package_share_directory(PACKAGE)) / "config" / "pipeline.yaml")


def node_actions(values: dict[str, str]) -> list[object]:
    """One launch_ros LifecycleNode per planned node."""
    from launch_ros.actions import LifecycleNode

    from dap_led_ros.ros.pipeline import plan_nodes, with_file_cameras

    params_file = values.get("params_file") or default_params_file()
    actions = []
    options = with_file_cameras(pipeline_options(values), Path(params_file), values.get("namespace", ""))
    for plan in plan_nodes(options):
        overrides = dict(plan.overrides)
        if plan.kind == "depth" and values.get("depth_model"):
            overrides["model"] = values["depth_model"]
        actions.append(LifecycleNode(
            package=PACKAGE, executable=plan.spec.executable, name=plan.spec.node_name,
            namespace=plan.namespace(values.get("namespace", "")), output="screen", emulate_tty=True,
            parameters=[params_file, overrides] if overrides else [params_file],
            remappings=plan.remaps))
    return actions


def _launch_setup(context, *args, **kwargs):  # OpaqueFunction signature
    from launch.substitutions import LaunchConfiguration

    values = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    return node_actions(values)


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, (default, description) in ARGUMENTS.items()]
        + [OpaqueFunction(function=_launch_setup)])

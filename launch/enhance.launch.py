"""Launch enhance_node, with detect_node and depth_node on its output, as lifecycle nodes.

    ros2 launch dap_led_ros enhance.launch.py camera_topic:=/front/image_raw namespace:=/front \
        nodes:=enhance,detect,depth depth_model:=/models/depth_anything_v2_vits.onnx
    # four cameras on one model (/car/front/image_raw ...), a detect_node per camera
    # (launch/multi_camera.launch.py does the same with config/multi_camera.yaml):
    ros2 launch dap_led_ros enhance.launch.py namespace:=/car cameras:=front,rear,left,right
    # replaying a bag (`ros2 bag play drive/ --clock`), debug logs, restart a node that dies:
    ros2 launch dap_led_ros enhance.launch.py use_sim_time:=true log_level:=debug respawn:=true

Wiring and overrides come from `dap_led_ros.ros.pipeline.plan_nodes`, the same code that wires
`dap-led pipeline`, so both start the same nodes the same way. Empty arguments keep the
params file's value. `ros2 launch dap_led_ros enhance.launch.py --show-args` lists them all.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = "dap_led_ros"
# image_transport's compressed transport: <image topic>/compressed (dap_led_ros.ros.camera_channel.COMPRESSED)
COMPRESSED = "/compressed"
# rcutils' severities, as `--ros-args --log-level <level>` takes them (case-insensitive)
LOG_LEVELS = ("debug", "info", "warn", "warning", "error", "fatal")
RESPAWN_DELAY_S = 2.0  # with respawn:=true, wait this long before restarting a node that exited


def _option_defaults() -> object:
    """PipelineOptions(): the one source of the wiring defaults, shared with `dap-led pipeline`."""
    from dap_led_ros.ros.pipeline import PipelineOptions

    return PipelineOptions()


_DEFAULTS = _option_defaults()

# name -> (default, description). "" keeps what the params file says.
ARGUMENTS: dict[str, tuple[str, str]] = {
    "namespace": ("", "namespace of all nodes, e.g. /front_cam"),
    "nodes": (_DEFAULTS.nodes, "comma-separated nodes to start: enhance, detect, depth"),
    "camera_topic": (_DEFAULTS.camera_topic, "enhance_node's input image; camera_info and the "
                                             "compressed transport (<topic>/compressed) are taken beside it"),
    "enhanced_topic": (_DEFAULTS.enhanced_topic, "topic enhance_node publishes and detect/depth read; "
                                                 "its camera_info and <topic>/compressed move along"),
    "detect_input": (_DEFAULTS.detect_input, "what detect_node reads: routed (enhance_node's detect/image: "
                                             "restored only where the frame is dark enough for it to help) | "
                                             "enhanced (the restored frames) | camera (the camera's own); "
                                             "docs/evaluation.md, perception-bench"),
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
    "detector_model": ("", "detect_node ONNX detector (empty: the params file's; the shipped SSD); "
                           "enhance_node routes detect/image by the threshold measured for it"),
    "depth_model": ("", "depth_node ONNX model (required when depth runs)"),
    "input_reliability": ("", "QoS of the nodes' subscriptions: best_effort | reliable"),
    "input_depth": ("", "QoS queue depth of the nodes' subscriptions"),
    "output_reliability": ("", "QoS of the nodes' publishers: best_effort | reliable"),
    "output_depth": ("", "QoS queue depth of the nodes' publishers"),
    "use_sim_time": ("false", "true: every node takes its time from /clock (replaying a bag with "
                              "`ros2 bag play --clock`); set on every node, over the params file"),
    "log_level": ("info", "log level of every node: debug | info | warn | error | fatal "
                          "(--ros-args --log-level)"),
    "respawn": ("false", f"true: restart a node whose process exits, {RESPAWN_DELAY_S:g} s later "
                         "(it comes back unconfigured unless autostart)"),
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
        enhanced_topic=values["enhanced_topic"], detect_input=values.get("detect_input", "").strip()
        or _DEFAULTS.detect_input,
        autostart=parse_bool(autostart) if autostart is not None else None,
        input_reliability=given("input_reliability"), input_depth=number("input_depth"),
        output_reliability=given("output_reliability"), output_depth=number("output_depth"),
        model=given("model"), backend=given("backend"), device=given("device"),
        engine=given("engine"), cameras=given("cameras"), input_transport=given("input_transport"),
        detector_model=given("detector_model"))


def _flag(values: dict[str, str], name: str) -> bool:
    from dap_led_ros.ros.pipeline import PipelineError, parse_bool

    text = values.get(name, "").strip() or ARGUMENTS[name][0]
    try:
        return parse_bool(text)
    except ValueError as exc:
        raise PipelineError(f"{name}: {exc}") from None


def process_options(values: dict[str, str]) -> dict[str, object]:
    """LifecycleNode keyword arguments of every node: log level, respawn (launch_ros' names)."""
    from dap_led_ros.ros.pipeline import PipelineError

    level = values.get("log_level", "").strip().lower() or ARGUMENTS["log_level"][0]
    if level not in LOG_LEVELS:
        raise PipelineError(f"log_level: one of {', '.join(LOG_LEVELS)}; got '{values['log_level']}'")
    return {"ros_arguments": ["--log-level", level],  # launch_ros puts them after --ros-args
            "respawn": _flag(values, "respawn"), "respawn_delay": RESPAWN_DELAY_S}


def node_remaps(plan: object) -> list[tuple[str, str]]:
    """The plan's remaps, with the compressed transport of each image topic moved along.

    Remap rules match whole names: `image_raw:=/cam/image_color` leaves `image_raw/compressed`
    where it was, so each moved image topic the node also uses as `<topic>/compressed`
    (enhance_node's input with input_transport compressed, its publish_compressed output) gets a
    rule of its own: `image_raw/compressed:=/cam/image_color/compressed`, as image_transport names it.
    """
    from dap_led_ros.ros.pipeline import CAMERA_TOPIC, ENHANCED_TOPIC

    compressed_images = {"enhance": (CAMERA_TOPIC, ENHANCED_TOPIC)}.get(plan.kind, ())
    remaps = []
    for source, target in plan.remaps:
        remaps.append((source, target))
        if source in compressed_images:
            remaps.append((source + COMPRESSED, target + COMPRESSED))
    return remaps


def default_params_file() -> str:
    from ament_index_python.packages import get_package_share_directory

    return str(Path(get_package_share_directory(PACKAGE)) / "config" / "pipeline.yaml")


def node_actions(values: dict[str, str]) -> list[object]:
    """One launch_ros LifecycleNode per planned node."""
    from launch_ros.actions import LifecycleNode

    from dap_led_ros.ros.pipeline import plan_nodes, with_file_settings

    params_file = values.get("params_file") or default_params_file()
    process = process_options(values)
    use_sim_time = _flag(values, "use_sim_time")
    actions = []
    options = with_file_settings(pipeline_options(values), Path(params_file), values.get("namespace", ""))
    for plan in plan_nodes(options):
        overrides = dict(plan.overrides)
        if plan.kind == "depth" and values.get("depth_model"):
            overrides["model"] = values["depth_model"]
        overrides["use_sim_time"] = use_sim_time
        actions.append(LifecycleNode(
            package=PACKAGE, executable=plan.spec.executable, name=plan.spec.node_name,
            namespace=plan.namespace(values.get("namespace", "")), output="screen", emulate_tty=True,
            parameters=[params_file, overrides], remappings=node_remaps(plan), **process))
    return actions


def launch_description(arguments, make_actions):
    """The arguments declared, then the nodes `make_actions({name: value})` returns for their values
    (shared with multi_camera.launch.py)."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration

    def setup(context, *args, **kwargs):  # OpaqueFunction signature
        return make_actions({name: LaunchConfiguration(name).perform(context) for name in arguments})

    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, (default, description) in arguments.items()]
        + [OpaqueFunction(function=setup)])


def generate_launch_description():
    return launch_description(ARGUMENTS, node_actions)

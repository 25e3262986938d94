"""Several cameras on one model: one enhance_node for all of them, a detect_node per camera.

    ros2 launch dap_led_ros multi_camera.launch.py namespace:=/car cameras:=front,rear,left,right

enhance.launch.py with the package's config/multi_camera.yaml as its params file: one process and
one loaded model serve `<namespace>/<camera>/image_raw` (or `image_raw/compressed`) and publish
`<namespace>/<camera>/enhanced/image` per camera; detect_node (and depth_node with
`nodes:=enhance,detect,depth`) runs once per camera in `<namespace>/<camera>`. `cameras` empty
keeps the params file's list (config/multi_camera.yaml: front,rear,left,right). Every other
argument is enhance.launch.py's, except camera_topic and enhanced_topic: with several cameras the
topics are fixed per camera (remap or namespace the drivers instead). The nodes and their wiring
are enhance.launch.py's own code (`node_actions`), loaded from beside this file.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

PARAMS_FILE = "multi_camera.yaml"
FIXED = ("camera_topic", "enhanced_topic")  # cannot be moved with several cameras


def _enhance_launch():
    """launch/enhance.launch.py, installed beside this file (share/dap_led_ros/launch)."""
    path = Path(__file__).with_name("enhance.launch.py")
    spec = importlib.util.spec_from_file_location("dap_led_ros_enhance_launch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_ENHANCE = _enhance_launch()

ARGUMENTS: dict[str, tuple[str, str]] = {
    name: (default, description) for name, (default, description) in _ENHANCE.ARGUMENTS.items()
    if name not in FIXED}
ARGUMENTS["cameras"] = ("", "camera namespaces under <namespace>, e.g. front,rear,left,right; "
                            "empty: the params file's (config/multi_camera.yaml: front,rear,left,right)")
ARGUMENTS["params_file"] = ("", f"ROS 2 params file for all nodes; empty: the package's config/{PARAMS_FILE}")


def default_params_file() -> str:
    from ament_index_python.packages import get_package_share_directory

    return str(Path(get_package_share_directory(_ENHANCE.PACKAGE)) / "config" / PARAMS_FILE)


def node_actions(values: dict[str, str]) -> list[object]:
    """enhance.launch.py's LifecycleNodes, with this file's params file; refuses a single camera."""
    from dap_led_ros.ros.pipeline import PipelineError, with_file_settings

    values = {**{name: _ENHANCE.ARGUMENTS[name][0] for name in FIXED}, **values,
              "params_file": values.get("params_file") or default_params_file()}
    namespace = values.get("namespace", "")
    options = with_file_settings(_ENHANCE.pipeline_options(values), Path(values["params_file"]), namespace)
    if not options.camera_names():
        raise PipelineError(f"multi_camera.launch.py: no cameras: pass cameras:=front,rear,... or a "
                            f"params_file whose enhance_node sets cameras ({values['params_file']} does "
                            f"not); one camera: enhance.launch.py")
    return _ENHANCE.node_actions(values)


def generate_launch_description():
    return _ENHANCE.launch_description(ARGUMENTS, node_actions)

"""launch/enhance.launch.py where launch_ros is missing: everything it names must exist.

The file imports launch/launch_ros inside its functions, so its wiring code runs here with a
recording stand-in for launch_ros' LifecycleNode. Topics are checked against real nodes: each
planned node is created with the plan's remaps in a real rclpy context and activated, and its
resolved topic names must be the remap targets (a remap whose source the node does not use
would leave the default name). Where launch_ros imports, a real launch test runs as well.
"""
from __future__ import annotations

import ast
import importlib
import sys
import threading
import types
from pathlib import Path

import pytest
import yaml

from dap_led_ros.ros.pipeline import NODE_KINDS, camera_info_topic, plan_nodes
from dap_led_ros.ros.params import flat_defaults

from conftest import RosHarness, load_module_from_file
from tiny_depth_model import build_tiny_depth_model

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "enhance.launch.py"
PIPELINE_YAML = ROOT / "config" / "pipeline.yaml"
NS = "/front"
FULL = {"nodes": "enhance,detect,depth", "camera_topic": "/front/image_color",
        "enhanced_topic": "restored/image", "namespace": NS, "autostart": "false",
        "input_reliability": "reliable", "input_depth": "2", "backend": "torch",
        "depth_model": "/models/dav2.onnx"}


def load_launch_module() -> types.ModuleType:
    return load_module_from_file(LAUNCH_FILE, "enhance_launch")


def console_scripts() -> dict[str, str]:
    """name -> 'module:function' from setup.py's entry_points."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = ast.literal_eval(value)
                    return dict((p.strip() for p in e.split("=", 1)) for e in entries)
    raise AssertionError("no console_scripts in setup.py")


def launch_values(**changes: str) -> dict[str, str]:
    module = load_launch_module()
    values = {name: default for name, (default, _) in module.ARGUMENTS.items()}
    values.update(changes)
    return values


@pytest.fixture
def recorded_nodes(monkeypatch) -> list[dict]:
    """Install a launch_ros stand-in whose LifecycleNode records its keyword arguments."""
    calls: list[dict] = []
    actions = types.ModuleType("launch_ros.actions")
    actions.LifecycleNode = lambda **kwargs: calls.append(kwargs) or kwargs
    package = types.ModuleType("launch_ros")
    package.actions = actions
    monkeypatch.setitem(sys.modules, "launch_ros", package)
    monkeypatch.setitem(sys.modules, "launch_ros.actions", actions)
    return calls


def test_the_file_is_valid_python_with_a_launch_description():
    tree = ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    module = load_launch_module()
    assert {"namespace", "nodes", "camera_topic", "params_file", "backend", "engine",
            "autostart", "input_reliability", "input_depth", "output_reliability",
            "output_depth"} <= set(module.ARGUMENTS)


def test_executables_and_params_files_exist(recorded_nodes):
    scripts = console_scripts()
    module = load_launch_module()
    module.node_actions(launch_values(**FULL, params_file=str(PIPELINE_YAML)))
    assert [c["executable"] for c in recorded_nodes] == ["enhance_node", "detect_node",
                                                         "depth_node"]
    for call in recorded_nodes:
        target = scripts[call["executable"]]  # KeyError: not a console script
        module_name, function = target.split(":")
        assert callable(getattr(importlib.import_module(module_name), function))
        assert call["namespace"] == NS and call["name"] == call["executable"]
        params_file, overrides = call["parameters"]
        assert Path(params_file).is_file()
        assert overrides["autostart"] is False
        assert overrides["qos.input.reliability"] == "reliable"
        assert overrides["qos.input.depth"] == 2
    by_name = {c["name"]: c for c in recorded_nodes}
    assert by_name["enhance_node"]["parameters"][1]["backend"] == "torch"
    assert by_name["depth_node"]["parameters"][1]["model"] == "/models/dav2.onnx"
    assert "backend" not in by_name["detect_node"]["parameters"][1]
    # The default params file is the package's config/pipeline.yaml, installed by setup.py.
    setup = (ROOT / "setup.py").read_text()
    assert 'glob("config/*.yaml")' in setup and 'glob("launch/*.launch.py")' in setup
    default = launch_values(nodes="detect")
    module.default_params_file = lambda: str(PIPELINE_YAML)  # no ament index here
    module.node_actions(default)
    assert recorded_nodes[-1]["parameters"] == [str(PIPELINE_YAML)]
    assert recorded_nodes[-1]["remappings"] == []


def test_pipeline_yaml_sets_only_parameters_the_nodes_declare():
    doc = yaml.safe_load(PIPELINE_YAML.read_text())
    for kind in NODE_KINDS.values():
        section = doc[f"/**/{kind.node_name}"]["ros__parameters"]
        config_class = getattr(importlib.import_module(kind.module),
                               kind.class_name).config_class
        known = flat_defaults(config_class)

        def leaves(d: dict, prefix: str = ""):
            for key, value in d.items():
                if isinstance(value, dict):
                    yield from leaves(value, f"{prefix}{key}.")
                else:
                    yield f"{prefix}{key}", value

        for name, value in leaves(section):
            assert name in known, f"{kind.node_name}: unknown parameter {name}"
            assert type(value) is type(known[name]) or isinstance(known[name], float), (
                f"{kind.node_name}.{name}: {value!r} vs default {known[name]!r}")


def test_rcl_reads_every_pipeline_yaml_value_for_namespaced_nodes(ros_domain_id: int):
    """rcl itself parses the file (flow mappings, /** keys) and hands each node all its values."""
    import rclpy
    from rclpy.context import Context

    doc = yaml.safe_load(PIPELINE_YAML.read_text())
    context = Context()
    rclpy.init(args=["test", "--ros-args", "--params-file", str(PIPELINE_YAML)], context=context,
               domain_id=ros_domain_id)
    try:
        for kind in NODE_KINDS.values():
            cls = getattr(importlib.import_module(kind.module), kind.class_name)
            node = cls(kind.node_name, context=context, namespace="/some/camera")
            try:
                from_file = {name: p.value for name, p in node._parameter_overrides.items()}
                section = doc[f"/**/{kind.node_name}"]["ros__parameters"]
                want = {}
                for key, value in section.items():
                    if isinstance(value, dict):  # qos.input.*, qos.output.*
                        for side, settings in value.items():
                            want.update({f"{key}.{side}.{k}": v for k, v in settings.items()})
                    else:
                        want[key] = value
                assert from_file == want, kind.node_name
                assert node.get_parameter("qos.input.reliability").value == "best_effort"
            finally:
                node.destroy_node()
    finally:
        context.try_shutdown()


def test_remaps_hit_topics_the_nodes_really_use(ros: RosHarness, tiny_checkpoint, tmp_path):
    """Real nodes with the plan's remaps and namespace: resolved names are the remap targets."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    module = load_launch_module()
    options = module.pipeline_options(launch_values(**FULL))
    depth_model = build_tiny_depth_model(tmp_path / "depth.onnx")
    models = {"enhance": [Parameter("model", value=str(tiny_checkpoint)),
                          Parameter("backend", value="torch"), Parameter("threads", value=1)],
              "depth": [Parameter("model", value=str(depth_model))],
              "detect": []}
    topics: dict[str, tuple[set[str], set[str]]] = {}
    for plan in plan_nodes(options):
        remaps = [a for src, dst in plan.remaps for a in ("-r", f"{src}:={dst}")]
        node = plan.node_class()(
            plan.spec.node_name, context=ros.context, namespace=NS,
            cli_args=["--ros-args", *remaps], use_global_arguments=False,
            parameter_overrides=[Parameter("autostart", value=False), *models[plan.kind]])
        try:
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS, node.get_name()
            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS, node.get_name()
            assert node.state_label == "active"
            topics[plan.kind] = ({s.topic_name for s in node.subscriptions},
                                 {p.topic_name for p in node.publishers})
        finally:
            node.release()
            node.destroy_node()
        resolved = topics[plan.kind][0] | topics[plan.kind][1]
        for _, target in plan.remaps:
            want = target if target.startswith("/") else f"{NS}/{target}"
            assert want in resolved, f"{plan.kind}: remap to {target} unused; topics {resolved}"

    enhanced = f"{NS}/restored/image"
    assert "/front/image_color" in topics["enhance"][0]
    assert camera_info_topic("/front/image_color") in topics["enhance"][0]
    assert enhanced in topics["enhance"][1]
    assert enhanced in topics["detect"][0] and enhanced in topics["depth"][0]
    assert camera_info_topic(enhanced) in topics["depth"][0]
    assert f"{NS}/detections/json" in topics["detect"][1]
    assert f"{NS}/depth/image" in topics["depth"][1]


def test_real_launch_where_launch_ros_is_installed(ros: RosHarness):
    pytest.importorskip("launch_ros", reason="launch_ros is not installable with pip; "
                                             "this test runs on a ROS 2 install")
    ament = pytest.importorskip("ament_index_python.packages")
    try:
        ament.get_package_share_directory("dap_led_ros")
    except Exception:  # noqa: BLE001
        pytest.skip("dap_led_ros is not installed in an ament index (colcon build)")
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    service = LaunchService()
    service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={"nodes": "detect", "namespace": "/launch_test"}.items())]))
    runner = threading.Thread(target=service.run, daemon=True)
    runner.start()
    try:
        ros.spin_until(lambda: _state_or_none(ros, "/launch_test/detect_node") == "active",
                       120.0, "detect_node active under launch")
    finally:
        service.shutdown()
        runner.join(timeout=30)


def _state_or_none(ros: RosHarness, node: str) -> str | None:
    try:
        return ros.lifecycle_state(node, timeout=2.0)
    except AssertionError:
        return None


MULTI_YAML = ROOT / "config" / "multi_camera.yaml"


def test_cameras_start_one_enhance_node_and_a_detect_node_per_camera(recorded_nodes):
    module = load_launch_module()
    module.node_actions(launch_values(namespace="/car", cameras="front,rear", nodes="enhance,detect",
                                      params_file=str(PIPELINE_YAML)))
    assert [(c["executable"], c["namespace"]) for c in recorded_nodes] == [
        ("enhance_node", "/car"), ("detect_node", "/car/front"), ("detect_node", "/car/rear")]
    assert recorded_nodes[0]["parameters"][1]["cameras"] == "front,rear"
    assert all(c["remappings"] == [] for c in recorded_nodes)
    # The example params file names its cameras itself: detect_node per camera without the argument.
    recorded_nodes.clear()
    module.node_actions(launch_values(namespace="/car", params_file=str(MULTI_YAML)))
    assert [c["namespace"] for c in recorded_nodes] == ["/car", "/car/front", "/car/rear", "/car/left",
                                                        "/car/right"]
    assert recorded_nodes[0]["parameters"] == [str(MULTI_YAML), {"cameras": "front,rear,left,right"}]


def test_cameras_refuse_moved_topics():
    from dap_led_ros.ros.pipeline import PipelineError, PipelineOptions

    for moved in ({"camera_topic": "/cam/image_color"}, {"enhanced_topic": "restored/image"}):
        with pytest.raises(PipelineError, match="cannot be moved with several cameras"):
            plan_nodes(PipelineOptions(cameras="front,rear", **moved))


def test_multi_camera_yaml_sets_only_parameters_the_nodes_declare_and_valid_cameras():
    from dap_led_ros.ros.enhance_node import EnhanceNodeConfig
    from dap_led_ros.ros.params import load_params_file

    doc = yaml.safe_load(MULTI_YAML.read_text())
    for key, section in doc.items():
        kind = next(k for k in NODE_KINDS.values() if key == f"/**/{k.node_name}")
        known = flat_defaults(getattr(importlib.import_module(kind.module), kind.class_name).config_class)
        assert set(section["ros__parameters"]) <= set(known), key
    cfg = load_params_file(EnhanceNodeConfig, MULTI_YAML, "enhance_node", "/car")
    assert cfg.camera_names() == ["front", "rear", "left", "right"]

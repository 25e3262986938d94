"""launch/enhance.launch.py and launch/multi_camera.launch.py where launch_ros is missing.

The files import launch/launch_ros inside their functions, so their wiring code runs here with a
recording stand-in for launch_ros' LifecycleNode that takes exactly the keyword arguments the real
one takes (LifecycleNode -> Node -> ExecuteProcess -> ExecuteLocal -> Action) and checks the types
the real code relies on. Topics are checked against real nodes: each recorded node is created as
launch_ros would start it (params files, parameter dict, remaps, namespace) in a real rclpy context
and activated, and its resolved topic names must be the remap targets (a remap whose source the node
does not use would leave the default name), with no topic left at a default name that was moved.
Where launch_ros imports, the stand-in is compared with it and a real launch test runs as well.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import sys
import threading
import types
from pathlib import Path

import pytest
import yaml

from dap_led_ros.ros.pipeline import NODE_KINDS, PipelineError, camera_info_topic, plan_nodes
from dap_led_ros.ros.params import flat_defaults

from conftest import RosHarness, load_module_from_file
from tiny_depth_model import build_tiny_depth_model

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "enhance.launch.py"
MULTI_LAUNCH_FILE = ROOT / "launch" / "multi_camera.launch.py"
PIPELINE_YAML = ROOT / "config" / "pipeline.yaml"
NS = "/front"
FULL = {"nodes": "enhance,detect,depth", "camera_topic": "/front/image_color",
        "enhanced_topic": "restored/image", "namespace": NS, "autostart": "false",
        "input_reliability": "reliable", "input_depth": "2", "backend": "torch",
        "depth_model": "/models/dav2.onnx"}


def load_launch_module() -> types.ModuleType:
    return load_module_from_file(LAUNCH_FILE, "enhance_launch")


def load_multi_launch_module() -> types.ModuleType:
    return load_module_from_file(MULTI_LAUNCH_FILE, "multi_camera_launch")


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


def _lifecycle_node_signature(
        *, name, namespace,  # LifecycleNode: both required
        executable, package=None, exec_name=None, parameters=None, remappings=None,  # Node
        ros_arguments=None, arguments=None,
        prefix=None, cwd=None, env=None, additional_env=None,  # ExecuteProcess (cmd: Node's)
        shell=False, sigterm_timeout=None, sigkill_timeout=None, emulate_tty=False,  # ExecuteLocal
        output="log", output_format=None, cached_output=False, log_cmd=False, on_exit=None,
        respawn=False, respawn_delay=None, respawn_max_retries=-1,
        condition=None):  # Action
    """launch_ros.actions.LifecycleNode's keyword arguments (ros2/launch_ros, ros2/launch sources;
    respawn_max_retries: launch releases from late 2023 on, not Humble's first ones)."""


LIFECYCLE_NODE = inspect.signature(_lifecycle_node_signature)
PARAMETER_VALUES = (str, int, float, bool)


def _check_lifecycle_node_call(kwargs: dict) -> None:
    """What launch_ros would refuse or mangle: unknown or missing arguments, wrong types."""
    LIFECYCLE_NODE.bind(**kwargs)  # TypeError, as the real constructor raises
    params = kwargs.get("parameters")
    if params is not None:
        assert isinstance(params, list), "Node: parameters must be a list"  # ensure_argument_type
        for item in params:
            if isinstance(item, dict):
                for key, value in item.items():
                    assert isinstance(key, str), key
                    values = value if isinstance(value, list) else [value]
                    assert all(isinstance(v, PARAMETER_VALUES) for v in values), (key, value)
            else:
                assert isinstance(item, (str, Path)), item
    for name in ("ros_arguments", "arguments"):  # ['--ros-args'] + ros_arguments; cmd += arguments
        assert kwargs.get(name) is None or isinstance(kwargs[name], list), name
        assert all(isinstance(a, str) for a in kwargs.get(name) or []), name
    for rule in kwargs.get("remappings") or []:
        assert isinstance(rule, tuple) and len(rule) == 2 and all(isinstance(x, str) for x in rule), rule
    assert isinstance(kwargs.get("respawn", False), (bool, str))
    delay = kwargs.get("respawn_delay")
    assert delay is None or isinstance(delay, float), delay


@pytest.fixture
def recorded_nodes(monkeypatch) -> list[dict]:
    """Install a launch_ros stand-in whose LifecycleNode records its keyword arguments."""
    calls: list[dict] = []

    def lifecycle_node(**kwargs):
        _check_lifecycle_node_call(kwargs)
        calls.append(kwargs)
        return kwargs

    actions = types.ModuleType("launch_ros.actions")
    actions.LifecycleNode = lifecycle_node
    package = types.ModuleType("launch_ros")
    package.actions = actions
    monkeypatch.setitem(sys.modules, "launch_ros", package)
    monkeypatch.setitem(sys.modules, "launch_ros.actions", actions)
    return calls


@pytest.mark.parametrize("path", [LAUNCH_FILE, MULTI_LAUNCH_FILE], ids=lambda p: p.name)
def test_the_file_is_valid_python_with_a_launch_description(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    module = load_launch_module()
    assert {"namespace", "nodes", "camera_topic", "params_file", "backend", "engine",
            "autostart", "input_reliability", "input_depth", "output_reliability",
            "output_depth", "use_sim_time", "log_level", "respawn"} <= set(module.ARGUMENTS)
    # setup.py installs every launch/*.launch.py into share/dap_led_ros/launch, side by side
    # (multi_camera.launch.py loads enhance.launch.py from beside itself).
    assert path in set((ROOT / "launch").glob("*.launch.py"))
    assert 'glob("launch/*.launch.py")' in (ROOT / "setup.py").read_text()


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
    assert recorded_nodes[-1]["parameters"] == [str(PIPELINE_YAML), {"use_sim_time": False}]
    assert recorded_nodes[-1]["remappings"] == [("enhanced/image", "detect/image")]  # detect_input routed
    assert recorded_nodes[-1]["ros_arguments"] == ["--log-level", "info"]
    assert recorded_nodes[-1]["respawn"] is False


def test_use_sim_time_log_level_and_respawn_reach_every_node(recorded_nodes):
    module = load_launch_module()
    module.node_actions(launch_values(**FULL, params_file=str(PIPELINE_YAML), use_sim_time="true",
                                      log_level="DEBUG", respawn="true"))
    assert len(recorded_nodes) == 3
    for call in recorded_nodes:
        assert call["parameters"][1]["use_sim_time"] is True  # a bool, as rclpy declares it
        # launch_ros: `<exe> --ros-args --log-level debug --ros-args -r __node:=... --params-file ...`
        assert call["ros_arguments"] == ["--log-level", "debug"]
        assert "arguments" not in call
        assert call["respawn"] is True and call["respawn_delay"] == module.RESPAWN_DELAY_S == 2.0
    for name, bad in (("use_sim_time", "maybe"), ("respawn", "2"), ("log_level", "verbose")):
        with pytest.raises(PipelineError, match=name):
            module.node_actions(launch_values(nodes="detect", params_file=str(PIPELINE_YAML), **{name: bad}))


def test_moved_topics_take_their_compressed_transport_along(recorded_nodes):
    """Remaps match whole names: image_raw:=X leaves image_raw/compressed unless it has its own rule."""
    module = load_launch_module()
    module.node_actions(launch_values(**FULL, params_file=str(PIPELINE_YAML)))
    by_name = {c["name"]: c["remappings"] for c in recorded_nodes}
    assert by_name["enhance_node"] == [
        ("enhanced/image", "restored/image"),
        ("enhanced/image/compressed", "restored/image/compressed"),
        ("enhanced/camera_info", "restored/camera_info"),
        ("image_raw", "/front/image_color"),
        ("image_raw/compressed", "/front/image_color/compressed"),
        ("camera_info", "/front/camera_info")]
    # detect/depth read the raw enhanced image only: no rule for a topic they never use; detect_node
    # reads enhance_node's routed output (detect_input routed), which the move leaves where it is.
    assert by_name["detect_node"] == [("enhanced/image", "detect/image")]
    assert by_name["depth_node"] == [("enhanced/image", "restored/image"),
                                     ("enhanced/camera_info", "restored/camera_info")]
    # image_transport's suffix, as enhance_node names its compressed topics
    from dap_led_ros.ros.camera_channel import COMPRESSED

    assert module.COMPRESSED == COMPRESSED


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
                assert (node.get_parameter("qos.input.reliability").value
                        == section["qos"]["input"]["reliability"])
            finally:
                node.destroy_node()
    finally:
        context.try_shutdown()


STALE = ("image_raw", "image_raw/compressed", "camera_info",  # default names FULL moves away
         "enhanced/image", "enhanced/image/compressed", "enhanced/camera_info")


def start_recorded_node(ros: RosHarness, call: dict, tmp_path: Path,
                        extra: list) -> tuple[set[str], set[str]]:
    """The node a recorded LifecycleNode call starts, as launch_ros starts it: its params files and
    its parameter dict (written, as launch_ros does, under the node's full name) as --params-file,
    its remaps, name and namespace; `extra` parameters (test models) on top. Configured and
    activated; returns its subscribed and published topics."""
    from rclpy.lifecycle import TransitionCallbackReturn

    kind = next(k for k in NODE_KINDS.values() if k.executable == call["executable"])
    full_name = f"{call['namespace'].rstrip('/')}/{call['name']}"
    args = ["--ros-args"]
    for item in call["parameters"]:
        if isinstance(item, dict):
            path = tmp_path / f"launch_params_{len(list(tmp_path.iterdir()))}.yaml"
            path.write_text(yaml.safe_dump({full_name: {"ros__parameters": item}}))
            item = path
        args += ["--params-file", str(item)]
    for source, target in call["remappings"]:
        args += ["-r", f"{source}:={target}"]
    node = getattr(importlib.import_module(kind.module), kind.class_name)(
        call["name"], context=ros.context, namespace=call["namespace"], cli_args=args,
        use_global_arguments=False, parameter_overrides=extra)
    try:
        overrides = call["parameters"][-1]
        for name in ("autostart", "use_sim_time", "cameras"):  # the dict won over /**/<node>
            if name in overrides:
                assert node.get_parameter(name).value == overrides[name], (full_name, name)
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS, full_name
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS, full_name
        assert node.state_label == "active"
        return ({s.topic_name for s in node.subscriptions}, {p.topic_name for p in node.publishers})
    finally:
        node.release()
        node.destroy_node()


def test_remaps_hit_topics_the_nodes_really_use(ros: RosHarness, recorded_nodes, tiny_checkpoint, tmp_path):
    """Real nodes started as the launch file starts them: resolved names are the remap targets,
    and nothing (the compressed transport included) stays at a default name that was moved."""
    from rclpy.parameter import Parameter

    module = load_launch_module()
    module.node_actions(launch_values(**FULL, params_file=str(PIPELINE_YAML), use_sim_time="true"))
    depth_model = build_tiny_depth_model(tmp_path / "depth.onnx")
    enhance = [Parameter("model", value=str(tiny_checkpoint)), Parameter("backend", value="torch"),
               Parameter("threads", value=1)]
    variants = {"enhance_node": [enhance, [*enhance, Parameter("input_transport", value="compressed")]],
                "depth_node": [[Parameter("model", value=str(depth_model))]],
                "detect_node": [[]]}
    params_dir = tmp_path / "params"
    params_dir.mkdir()
    topics: dict[str, tuple[set[str], set[str]]] = {}
    for call in recorded_nodes:
        subscribed, published = set(), set()
        for extra in variants[call["name"]]:  # enhance_node: raw and compressed input
            s, p = start_recorded_node(ros, call, params_dir, extra)
            subscribed |= s
            published |= p
        topics[call["name"]] = (subscribed, published)
        resolved = subscribed | published
        for _, target in call["remappings"]:
            want = target if target.startswith("/") else f"{NS}/{target}"
            assert want in resolved, f"{call['name']}: remap to {target} unused; topics {resolved}"
        targets = {t if t.startswith("/") else f"{NS}/{t}" for _, t in call["remappings"]}
        stale = resolved & {f"{NS}/{name}" for name in STALE} - targets  # /front/camera_info: both
        assert not stale, f"{call['name']}: {stale} not moved"

    enhanced = f"{NS}/restored/image"
    assert "/front/image_color" in topics["enhance_node"][0]
    assert "/front/image_color/compressed" in topics["enhance_node"][0]
    assert camera_info_topic("/front/image_color") in topics["enhance_node"][0]
    assert enhanced in topics["enhance_node"][1] and f"{enhanced}/compressed" in topics["enhance_node"][1]
    assert f"{NS}/detect/image" in topics["detect_node"][0] and enhanced in topics["depth_node"][0]
    assert f"{NS}/detect/image" in topics["enhance_node"][1]
    assert camera_info_topic(enhanced) in topics["depth_node"][0]
    assert f"{NS}/detections/json" in topics["detect_node"][1]
    assert f"{NS}/depth/image" in topics["depth_node"][1]


def test_stand_in_takes_what_launch_ros_takes():
    """The recording stand-in's keyword arguments are the real LifecycleNode's (where it imports)."""
    pytest.importorskip("launch_ros", reason="launch_ros is not installable with pip; "
                                             "this test runs on a ROS 2 install")
    import launch.actions
    from launch.action import Action
    from launch_ros.actions import LifecycleNode, Node

    classes = [LifecycleNode, Node, launch.actions.ExecuteProcess, Action]
    classes += [launch.actions.ExecuteLocal] if hasattr(launch.actions, "ExecuteLocal") else []
    real = {p.name for cls in classes for p in inspect.signature(cls.__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}
    real -= {"cmd", "process_description"}  # Node builds them
    ours = set(LIFECYCLE_NODE.parameters)
    assert ours <= real | {"respawn_max_retries"}, ours - real  # respawn_max_retries: newer launch only
    assert {"parameters", "remappings", "ros_arguments", "respawn", "respawn_delay"} <= real


@pytest.mark.parametrize("path, arguments, node", [
    (LAUNCH_FILE, {"nodes": "detect", "namespace": "/launch_test", "log_level": "debug",
                   "respawn": "true"}, "/launch_test/detect_node"),
    (MULTI_LAUNCH_FILE, {"nodes": "detect", "namespace": "/launch_test", "cameras": "cam_a"},
     "/launch_test/cam_a/detect_node"),
], ids=["enhance", "multi_camera"])
def test_real_launch_where_launch_ros_is_installed(ros: RosHarness, path, arguments, node):
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
        PythonLaunchDescriptionSource(str(path)), launch_arguments=arguments.items())]))
    runner = threading.Thread(target=service.run, daemon=True)
    runner.start()
    try:
        ros.spin_until(lambda: _state_or_none(ros, node) == "active",
                       120.0, f"{node} active under launch")
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
    assert [c["remappings"] for c in recorded_nodes] == [[], *[[("enhanced/image", "detect/image")]] * 2]
    # The example params file names its cameras itself: detect_node per camera without the argument.
    recorded_nodes.clear()
    module.node_actions(launch_values(namespace="/car", params_file=str(MULTI_YAML)))
    assert [c["namespace"] for c in recorded_nodes] == ["/car", "/car/front", "/car/rear", "/car/left",
                                                        "/car/right"]
    assert recorded_nodes[0]["parameters"] == [str(MULTI_YAML), {"cameras": "front,rear,left,right",
                                                                 "use_sim_time": False}]


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


def test_multi_camera_launch_file_starts_a_detect_node_per_camera(recorded_nodes, monkeypatch):
    """launch/multi_camera.launch.py (docs/ros.md): enhance.launch.py with config/multi_camera.yaml."""
    multi = load_multi_launch_module()
    assert set(multi.ARGUMENTS) == set(load_launch_module().ARGUMENTS) - {"camera_topic", "enhanced_topic"}
    # The default params file: the package's config/multi_camera.yaml, installed by setup.py.
    monkeypatch.setattr("ament_index_python.packages.get_package_share_directory", lambda package: str(ROOT))
    assert Path(multi.default_params_file()) == MULTI_YAML
    defaults = {name: default for name, (default, _) in multi.ARGUMENTS.items()}

    multi.node_actions({**defaults, "namespace": "/car"})  # cameras: the file's
    cameras = ["front", "rear", "left", "right"]
    assert [(c["name"], c["namespace"]) for c in recorded_nodes] == [
        ("enhance_node", "/car"), *[("detect_node", f"/car/{c}") for c in cameras]]
    assert recorded_nodes[0]["parameters"] == [str(MULTI_YAML), {"cameras": ",".join(cameras),
                                                                 "use_sim_time": False}]
    assert all(c["parameters"] == [str(MULTI_YAML), {"use_sim_time": False}] for c in recorded_nodes[1:])
    # per camera: the namespace places it; detect_node reads the routed output (detect_input routed)
    assert [c["remappings"] for c in recorded_nodes] == [[], *[[("enhanced/image", "detect/image")]] * 4]
    assert all(c["ros_arguments"] == ["--log-level", "info"] and c["respawn"] is False
               for c in recorded_nodes)

    recorded_nodes.clear()  # the argument chooses the cameras; depth per camera too
    multi.node_actions({**defaults, "namespace": "/car", "cameras": "front,rear",
                        "nodes": "enhance,detect,depth", "depth_model": "/models/dav2.onnx",
                        "autostart": "false", "use_sim_time": "true", "respawn": "true"})
    assert [(c["name"], c["namespace"]) for c in recorded_nodes] == [
        ("enhance_node", "/car"), ("detect_node", "/car/front"), ("detect_node", "/car/rear"),
        ("depth_node", "/car/front"), ("depth_node", "/car/rear")]
    assert recorded_nodes[0]["parameters"][1] == {"cameras": "front,rear", "autostart": False,
                                                  "use_sim_time": True}
    assert [c["parameters"][1].get("model") for c in recorded_nodes[3:]] == ["/models/dav2.onnx"] * 2
    assert all(c["respawn"] is True for c in recorded_nodes)

    # A params file without cameras and no argument: one camera is enhance.launch.py's job.
    with pytest.raises(PipelineError, match="no cameras"):
        multi.node_actions({**defaults, "params_file": str(PIPELINE_YAML)})


def test_multi_camera_launch_topics_line_up(ros: RosHarness, recorded_nodes, tiny_checkpoint, tmp_path):
    """Real nodes as multi_camera.launch.py starts them: each detect_node reads what the one
    enhance_node publishes for its camera."""
    from rclpy.parameter import Parameter

    multi = load_multi_launch_module()
    defaults = {name: default for name, (default, _) in multi.ARGUMENTS.items()}
    multi.node_actions({**defaults, "namespace": "/car", "cameras": "front,rear", "autostart": "false",
                        "params_file": str(MULTI_YAML)})
    enhance = [Parameter("model", value=str(tiny_checkpoint)), Parameter("backend", value="torch"),
               Parameter("threads", value=1)]
    topics = {(c["name"], c["namespace"]): start_recorded_node(
        ros, c, tmp_path, enhance if c["name"] == "enhance_node" else []) for c in recorded_nodes}
    enhance_in, enhance_out = topics[("enhance_node", "/car")]
    for camera in ("front", "rear"):
        assert {f"/car/{camera}/image_raw", f"/car/{camera}/camera_info"} <= enhance_in
        assert {f"/car/{camera}/enhanced/image", f"/car/{camera}/enhanced/image/compressed",
                f"/car/{camera}/enhanced/camera_info"} <= enhance_out
        detect_in, detect_out = topics[("detect_node", f"/car/{camera}")]
        assert detect_in == {f"/car/{camera}/detect/image"}  # routed by darkness (the default)
        assert f"/car/{camera}/detect/image" in enhance_out
        assert f"/car/{camera}/detections/json" in detect_out


def test_detect_input_camera_feeds_detect_node_the_camera_frames(recorded_nodes):
    from dap_led_ros.ros.pipeline import PipelineOptions

    module = load_launch_module()
    module.node_actions(launch_values(nodes="enhance,detect,depth", detect_input="camera",
                                      camera_topic="/cam/image_color", params_file=str(PIPELINE_YAML)))
    remaps = {c["executable"]: c["remappings"] for c in recorded_nodes}
    assert remaps["detect_node"] == [("enhanced/image", "/cam/image_color")]
    assert ("enhanced/image", "/cam/image_color") not in remaps["depth_node"]  # depth keeps the restored frames
    per_camera = plan_nodes(PipelineOptions(cameras="front,rear", detect_input="camera"))
    assert [(p.kind, p.camera, p.remaps) for p in per_camera if p.kind == "detect"] == [
        ("detect", "front", [("enhanced/image", "image_raw")]), ("detect", "rear", [("enhanced/image", "image_raw")])]
    assert [p.remaps for p in plan_nodes(PipelineOptions(detect_input="enhanced")) if p.kind == "detect"] == [[]]
    with pytest.raises(PipelineError, match="detect_input: one of routed, enhanced, camera; got 'raw'"):
        plan_nodes(PipelineOptions(detect_input="raw"))


def test_detect_input_routed_is_the_default_and_feeds_detect_node_enhance_nodes_detect_topic(recorded_nodes):
    from dap_led_ros.ros.pipeline import PipelineOptions

    module = load_launch_module()
    module.node_actions(launch_values(nodes="enhance,detect,depth", params_file=str(PIPELINE_YAML)))
    remaps = {c["executable"]: c["remappings"] for c in recorded_nodes}
    assert remaps["detect_node"] == [("enhanced/image", "detect/image")]
    assert remaps["depth_node"] == []  # depth keeps the restored frames
    per_camera = plan_nodes(PipelineOptions(cameras="front,rear"))
    assert [(p.kind, p.camera, p.remaps) for p in per_camera if p.kind == "detect"] == [
        ("detect", "front", [("enhanced/image", "detect/image")]),
        ("detect", "rear", [("enhanced/image", "detect/image")])]


def test_the_detector_model_reaches_detect_node_and_enhance_nodes_routing(recorded_nodes, tmp_path):
    """enhance_node routes detect/image by the threshold measured for the detector reading it."""
    from dap_led_ros.ros.pipeline import PipelineOptions

    module = load_launch_module()
    module.node_actions(launch_values(nodes="enhance,detect", detector_model="/models/yolo11n.onnx",
                                      params_file=str(PIPELINE_YAML)))
    params = {c["executable"]: c["parameters"][1] for c in recorded_nodes}
    assert params["detect_node"]["model"] == "/models/yolo11n.onnx"
    assert params["enhance_node"]["detector_model"] == "/models/yolo11n.onnx"
    # Set in the params file only: enhance_node is told too.
    mine = tmp_path / "mine.yaml"
    mine.write_text("/**/detect_node:\n  ros__parameters:\n    model: /models/centernet_mbv3_coco.onnx\n")
    recorded_nodes.clear()
    module.node_actions(launch_values(nodes="enhance,detect", params_file=str(mine)))
    params = {c["executable"]: c["parameters"][1] for c in recorded_nodes}
    assert params["enhance_node"]["detector_model"] == "/models/centernet_mbv3_coco.onnx"
    # Neither: nothing set, the shipped detector's threshold applies; without detect_node, not told.
    recorded_nodes.clear()
    module.node_actions(launch_values(nodes="enhance,detect", params_file=str(PIPELINE_YAML)))
    assert all("detector_model" not in c["parameters"][1] for c in recorded_nodes)
    per_camera = plan_nodes(PipelineOptions(cameras="front,rear", detector_model="d.onnx"))
    assert [p.overrides.get("model") for p in per_camera if p.kind == "detect"] == ["d.onnx", "d.onnx"]
    assert [p.overrides.get("detector_model") for p in plan_nodes(PipelineOptions(
        nodes="enhance", detector_model="d.onnx"))] == [None]

"""`dap-led pipeline`: the nodes from one params file in one process (pip-only installs)."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from dap_led_ros.ros.pipeline import (
    DETECT_INPUTS,
    ENHANCE_OVERRIDES,
    NODE_KINDS,
    RELIABILITIES,
    PipelineError,
    PipelineOptions,
    check_params_file,
    default_params_file,
    parse_bool,
    plan_nodes,
    run_pipeline,
    with_file_settings,
)

_LIBRARY = importlib.import_module("dap_led_ros.ros.pipeline")  # its docstring is the command's description


def _bool_arg(text: str) -> bool:
    try:
        return parse_bool(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = PipelineOptions()
    p = sub.add_parser(
        "pipeline", help="run enhance/detect/depth nodes in one process (no ros2 launch needed)",
        description=_LIBRARY.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 when the nodes are stopped cleanly; 2 when nothing was started (bad options, "
               "params file unreadable, not UTF-8 or not a YAML mapping of node names).")
    p.add_argument("--params", type=Path, default=None,
                   help="ROS 2 params file for the nodes (default: the installed "
                        "config/pipeline.yaml)")
    p.add_argument("--nodes", default=d.nodes,
                   help=f"comma-separated, from {', '.join(NODE_KINDS)} (default: %(default)s)")
    p.add_argument("--namespace", default="", help="namespace of all nodes, e.g. /front_cam")
    p.add_argument("--camera-topic", default=d.camera_topic,
                   help="enhance_node's input image topic; camera_info is taken beside it "
                        "(default: %(default)s)")
    p.add_argument("--enhanced-topic", default=d.enhanced_topic,
                   help="topic enhance_node publishes and depth/detect read (default: %(default)s)")
    p.add_argument("--detect-input", choices=DETECT_INPUTS, default=d.detect_input,
                   help="what detect_node reads: routed (enhance_node's detect/image: restored only where "
                        "the frame is dark enough for restoration to help), enhanced (the restored frames) or "
                        "camera (the camera's own); docs/evaluation.md, perception-bench (default: %(default)s)")
    p.add_argument("--detector-model", default=None, metavar="ONNX",
                   help="detect_node's ONNX detector (default: the params file's, else the shipped SSD); "
                        "enhance_node routes detect/image by the threshold measured for it")
    p.add_argument("--autostart", type=_bool_arg, default=None,
                   help="true: configure+activate at start; false: wait for a lifecycle manager")
    for side, what in (("input", "subscriptions"), ("output", "publishers")):
        p.add_argument(f"--{side}-reliability", choices=RELIABILITIES, default=None,
                       help=f"QoS reliability of the nodes' {what}")
        p.add_argument(f"--{side}-depth", type=int, default=None,
                       help=f"QoS queue depth of the nodes' {what}")
    for name in ENHANCE_OVERRIDES:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                       help=f"enhance_node's '{name}' parameter"
                            + (" (detect/depth then run once per camera)" if name == "cameras" else ""))
    p.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                   help="everything after this goes to ROS (remaps, -p overrides, --log-level)")
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> PipelineOptions:
    return PipelineOptions(
        nodes=args.nodes, camera_topic=args.camera_topic, enhanced_topic=args.enhanced_topic,
        detect_input=args.detect_input, autostart=args.autostart, input_reliability=args.input_reliability,
        input_depth=args.input_depth, output_reliability=args.output_reliability,
        output_depth=args.output_depth, detector_model=args.detector_model,
        **{name: getattr(args, name) for name in ENHANCE_OVERRIDES})


def run(args: argparse.Namespace) -> int:
    try:
        params = args.params if args.params is not None else default_params_file()
        check_params_file(params)  # missing, not UTF-8, not YAML, not a mapping: named as such
        plans = plan_nodes(with_file_settings(options_from_args(args), params, args.namespace))
    except (PipelineError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run_pipeline(plans, params, args.namespace, args.ros_args)



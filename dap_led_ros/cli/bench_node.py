"""`dap-led bench-node`: restored frames per second from a running enhance_node."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from dap_led_ros.cli.args import assignment, frame_size
from dap_led_ros.file_output import OutputError, os_error_text, prepare_folder, write_text


def add_parser(sub: argparse._SubParsersAction) -> None:
    from dap_led_ros.ros.node_bench import NodeBenchOptions

    d = NodeBenchOptions()
    p = sub.add_parser("bench-node", help="frames per second of enhance_node fed by a camera stand-in",
                       description="Start enhance_node (with its defaults unless -p is given) under its own "
                                   "namespace, publish a dark moving bgr8 sequence into it at --rate, and report "
                                   "the restored frames per second, end-to-end latency (input stamp to restored "
                                   "frame) and the node's /diagnostics (fps, p95 latency, ms per stage). Writes "
                                   "node_bench.json. Exit status: 0 measured; 1 the node did not start or "
                                   "restore frames, or the result could not be written; 2 bad options or "
                                   "--out-dir not writable.")
    p.add_argument("--size", type=frame_size, default=(d.width, d.height), metavar="WxH",
                   help="frame size (default: %(default)s)")
    p.add_argument("--rate", type=float, default=d.rate_hz, help="input frames per second (default: %(default)s)")
    p.add_argument("--warmup", type=float, default=d.warmup_s, metavar="S",
                   help="seconds after the first restored frame before measuring (default: %(default)s)")
    p.add_argument("--duration", type=float, default=d.duration_s, metavar="S",
                   help="measured seconds (default: %(default)s)")
    p.add_argument("--start-timeout", type=float, default=d.start_timeout_s, metavar="S",
                   help="give up when the node has not restored a frame after S seconds (default: %(default)s)")
    p.add_argument("-p", "--param", type=assignment("a node parameter like name:=value", empty_value=True),
                   action="append", default=[], metavar="NAME:=VALUE",
                   help="an enhance_node parameter (repeatable), e.g. -p model:=quality -p threads:=2")
    p.add_argument("--namespace", default=d.namespace, help="the node's namespace (default: %(default)s)")
    p.add_argument("--cameras", type=int, default=d.cameras,
                   help="cameras fed at --rate each, namespaces cam0, cam1, ...: served by one node "
                        "(-p cameras:=...) unless --separate-nodes (default: %(default)s)")
    p.add_argument("--separate-nodes", action="store_true",
                   help="with --cameras N: one single-camera node per camera (the comparison)")
    p.add_argument("--out-dir", type=Path, default=Path("bench_results"), help="output folder (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dap_led_ros.ros.node_bench import NodeBenchError, NodeBenchOptions, run_node_bench

    w, h = args.size
    options = NodeBenchOptions(width=w, height=h, rate_hz=args.rate, warmup_s=args.warmup,
                               duration_s=args.duration, start_timeout_s=args.start_timeout,
                               namespace=args.namespace, params=dict(args.param),
                               log_path=args.out_dir / "node_bench_node.log", cameras=args.cameras,
                               separate_nodes=args.separate_nodes)
    try:
        options.validate()  # before the output folder is made
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        prepare_folder(args.out_dir, "--out-dir")
    except OutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_node_bench(options)
    except NodeBenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    load = os.getloadavg()
    doc = {"command": " ".join(sys.argv), "cpus": os.cpu_count(), "load_avg_end": load, **asdict(result)}
    try:
        write_text(args.out_dir / "node_bench.json", json.dumps(doc, indent=2), force=True)
    except OSError as exc:
        print(f"error: cannot write {args.out_dir / 'node_bench.json'}: {os_error_text(exc)}", file=sys.stderr)
        return 1
    diag = result.diagnostics
    who = ("enhance_node" if result.cameras == 1 else
           f"{result.cameras} single-camera enhance_nodes" if result.separate_nodes else
           f"one enhance_node serving {result.cameras} cameras")
    print(f"{who} at {result.size}, fed {result.rate_hz:g} fps per camera: {result.fps_out:.2f} restored fps "
          f"({result.received} frames in {args.duration:g} s, {result.sent} sent)")
    if result.cameras > 1:
        print("per camera: " + ", ".join(f"{f:.2f}" for f in result.per_camera_fps) + " fps")
    print(f"resident memory {result.rss_mib:.0f} MiB (peak {result.rss_peak_mib:.0f} MiB)"
          + (" over all nodes" if result.separate_nodes else ""))
    print(f"end-to-end latency p50 {result.latency_p50_ms:.1f} ms, p95 {result.latency_p95_ms:.1f} ms")
    if diag:
        print(f"/diagnostics: fps_out {diag.get('fps_out', '?')}, latency p50 {diag.get('latency_p50_ms', '?')} ms, "
              f"p95 {diag.get('latency_p95_ms', '?')} ms, dropped {diag.get('dropped', '?')}")
        print(f"backend: {diag.get('backend', '?')}")
        stages = [k[len('stage_'):-len('_p50_ms')] for k in diag if k.startswith("stage_") and k.endswith("_p50_ms")]
        for s in stages:
            print(f"  {s:12s} p50 {diag[f'stage_{s}_p50_ms']:>7s} ms  p95 {diag.get(f'stage_{s}_p95_ms', '?'):>7s} ms")
    print(f"load average at the end {load[0]:.2f}; wrote {args.out_dir}/node_bench.json")
    return 0

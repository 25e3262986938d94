"""`dap-led perception-bench`: detector recall/precision/mAP@0.5 against darkness, noise and blur."""
from __future__ import annotations

import argparse
import importlib
import json
import platform
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from dap_led_ros.cli.args import add_backend_args, enhancer_config_from_args, results_write_failed
from dap_led_ros.workspace import BENCH_DEPTH_MODEL, BENCH_MEDIA_DIR, SECOND_DETECTOR

_LIBRARY = importlib.import_module("dap_led_ros.perception.perception_bench")
SHIPPED_MODELS = ("quality", "realtime")
SHIPPED_DETECTOR = "shipped"  # --detector-model alias of the shipped SSD-MobileNet-v2 COCO


def default_detectors(media: Path) -> list[str]:
    """The shipped detector, and the second, independent one where setup put it beside the frames."""
    second = media / SECOND_DETECTOR
    return [SHIPPED_DETECTOR] + ([str(second)] if second.is_file() else [])


def default_depth_model(media: Path) -> Path | None:
    """FastDepth where scripts/setup_bench_media.sh put it beside the frames, else none."""
    path = media / BENCH_DEPTH_MODEL
    return path if path.is_file() else None


def add_parser(sub: argparse._SubParsersAction) -> None:
    from dap_led_ros.perception.perception_bench import DEFAULT_LEVELS, BenchConfig

    d = BenchConfig()
    p = sub.add_parser("perception-bench", help="detector recall/precision/mAP against darkness, noise, blur",
                       description=_LIBRARY.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="writes perception_bench.md, .json, _plot.png, _sheet.png into --out-dir "
                              "(docs/evaluation.md).\nexit status: 0 done; 1 the results could not be "
                              "written; 2 nothing evaluated (bad option, frames missing, model not loadable).")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for the report, JSON, plot and sheet")
    p.add_argument("--media", type=Path, default=BENCH_MEDIA_DIR,
                   help="folder with vtest.avi and/or photos/ (default: %(default)s, from "
                        "scripts/setup_bench_media.sh)")
    p.add_argument("--restoration", nargs="*", default=list(SHIPPED_MODELS), metavar="MODEL",
                   help="restoration models to score: quality, realtime or checkpoint paths; none for the "
                        "baselines only (default: %(default)s)")
    p.add_argument("--detector-model", action="append", default=None, metavar="ONNX",
                   help=f"an ONNX detector (any layout `dap-led detect` reads) or '{SHIPPED_DETECTOR}' "
                        f"(SSD-MobileNet-v2 COCO), repeatable; default: {SHIPPED_DETECTOR} and the "
                        f"second detector (MobileNetV3-CenterNet) where scripts/setup_bench_media.sh "
                        f"put it in the media folder's models/")
    p.add_argument("--score", type=float, default=d.score_threshold,
                   help="score threshold of the reference boxes and of precision/recall (default: %(default)s)")
    p.add_argument("--size", nargs=2, type=int, default=list(d.size), metavar=("W", "H"))
    p.add_argument("--video-stride", type=int, default=d.video_stride, help="every n-th video frame (default: %(default)s)")
    p.add_argument("--levels", nargs="+", type=int, default=None, metavar="I",
                   help="run only these conditions of the sweep, by index: " + "; ".join(
                       f"{i} = {lv.name}" for i, lv in enumerate(DEFAULT_LEVELS)) + " (default: all)")
    p.add_argument("--bootstrap", type=int, default=d.bootstrap, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--sheet-frames", type=int, default=d.sheet_frames, help="frames in the contact sheet")
    p.add_argument("--depth-model", type=Path, default=None,
                   help="ONNX monocular depth model to score too (default: FastDepth from "
                        "scripts/setup_bench_media.sh where it is in the media folder's models/)")
    p.add_argument("--no-depth", action="store_true", help="score no depth model")
    p.add_argument("--network-level", action="store_true",
                   help="score each restoration at the network's own level; by default a model whose YAML "
                        "records a detector level (detect_target_level) is scored as detect/image carries "
                        "it, at that level (an explicit --target-level replaces both)")
    p.add_argument("--depth-preset", default=None,
                   help="input layout of --depth-model: depth-anything | midas-small | dpt | fastdepth "
                        "(docs/pipeline.md; default: fastdepth for the default model, else depth-anything)")
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes, the conditions split among them (each with --threads / jobs "
                        "threads, at least 1), then one report; parts and their sheets in OUT_DIR/parts/ "
                        "(default: %(default)s)")
    p.add_argument("--merge", nargs="+", type=Path, default=None, metavar="JSON",
                   help="instead of running: one report from perception_bench.json files of runs over "
                        "different --levels (same frames and settings), e.g. runs on separate cores")
    add_backend_args(p)
    p.set_defaults(func=run)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _write_merged(args: argparse.Namespace, wall_s: float | None = None) -> int:
    from dap_led_ros.file_output import OutputError, prepare_folder
    from dap_led_ros.perception import perception_bench as pb

    parts = []
    for path in args.merge:
        try:
            parts.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _error(f"cannot read {path}: {exc}")
    try:
        merged = pb.merge_results(parts)
        prepare_folder(args.out_dir, "--out-dir")
    except (ValueError, KeyError, OutputError) as exc:
        return _error(f"cannot merge: {exc}")
    header = [f"Merged from {', '.join(str(p) for p in args.merge)}: "
              + "; ".join(f"`{c}` ({w:.0f} s)" for c, w in zip(merged["command"], merged["wall_s"])), ""]
    if wall_s is not None:
        command = "dap-led " + " ".join(shlex.quote(a) for a in args.argv)
        header += [f"Command: `{command}` ({args.jobs} processes); machine: {platform.machine()}; wall time "
                   f"{wall_s:.0f} s (the contact sheets are the parts')", ""]
        merged = {**merged, "jobs_command": command, "jobs_wall_s": wall_s}
    header.append(_frames_line(merged))
    return _write(args.out_dir, merged, header, None)


def _without(argv: list[str], options: set[str]) -> list[str]:
    """argv less the given options and their values (this command has no positional arguments)."""
    out: list[str] = []
    dropping = False
    for token in argv:
        if dropping and not token.startswith("-"):
            continue
        dropping = False
        if token.split("=", 1)[0] in options:
            dropping = "=" not in token
            continue
        out.append(token)
    return out


def _run_jobs(args: argparse.Namespace, chosen: list[int]) -> int:
    """The conditions split over `args.jobs` processes of this command, then merged into one report."""
    import subprocess

    from dap_led_ros.file_output import OutputError, prepare_folder

    try:
        prepare_folder(args.out_dir, "--out-dir")
    except OutputError as exc:
        return _error(str(exc))
    jobs = min(args.jobs, len(chosen))
    shares = [chosen[k::jobs] for k in range(jobs)]
    threads = str(max(1, args.threads // jobs))
    base = _without(args.argv, {"--jobs", "--levels", "--out-dir", "--threads"})
    parts = [args.out_dir / "parts" / ("levels_" + "_".join(map(str, share))) for share in shares]
    started = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-m", "dap_led_ros.cli", *base, "--levels", *map(str, share),
                               "--out-dir", str(part), "--threads", threads], stdout=subprocess.DEVNULL)
             for share, part in zip(shares, parts)]
    codes = [proc.wait() for proc in procs]
    if any(codes):
        return _error(f"a worker failed (exit status {codes}); its report is above")
    args.merge = [part / "perception_bench.json" for part in parts]
    return _write_merged(args, wall_s=time.monotonic() - started)


def _frames_line(results: dict) -> str:
    from dap_led_ros.perception.night_camera import SensorModel

    cfg, h = results["config"], results["reference_height_px"]
    return (f"Frames: {results['frames']} inside {cfg['size'][0]}x{cfg['size'][1]} from {results.get('media', 'the media folder')} "
            f"(bootstrap groups: {results['groups']}); reference box height median {h['median']:.0f} px "
            f"(10-90 %: {h['p10']:.0f}-{h['p90']:.0f}); score >= {cfg['score_threshold']}, IoU >= "
            f"{cfg['iou_threshold']}; degradation: perception/night_camera.py {asdict(SensorModel())}.")


def _write(out_dir: Path, results: dict, header: list[str], sheet_image: object) -> int:
    """perception_bench.md, .json, _plot.png (and _sheet.png), each whole or not at all; prints the report."""
    from dap_led_ros.file_output import atomic_output, write_text
    from dap_led_ros.imaging.image_io import write_image
    from dap_led_ros.perception import perception_bench as pb
    from dap_led_ros.perception.downstream import json_ready

    results = {**results, "routing": pb.routing_thresholds(results)}
    report = pb.markdown_report(results, header)
    try:
        write_text(out_dir / "perception_bench.md", report, force=True)
        write_text(out_dir / "perception_bench.json", json.dumps(json_ready(results), indent=2), force=True)
        with atomic_output(out_dir / "perception_bench_plot.png", force=True) as tmp:
            pb.write_plot(results, tmp)
        if sheet_image is not None:
            write_image(out_dir / "perception_bench_sheet.png", sheet_image, force=True)
    except (OSError, ValueError) as exc:
        return results_write_failed(out_dir, exc)
    print(report)
    print(f"wrote {out_dir / 'perception_bench.md'}, .json, _plot.png" + (", _sheet.png" if sheet_image is not None else ""))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.merge:
        return _write_merged(args)
    from dap_led_ros.file_output import OutputError, prepare_folder
    from dap_led_ros.imaging.image_io import ImageReadError
    from dap_led_ros.perception import perception_bench as pb
    from dap_led_ros.perception.depth import DepthEstimator, DepthModelError, depth_config_for_preset
    from dap_led_ros.perception.detection import Detector, DetectorConfig, DetectorModelError
    from dap_led_ros.perception.downstream import depth_agreement
    from dap_led_ros.training.evaluate import auto_exposure, auto_exposure_clahe

    started = time.monotonic()
    try:
        cfg = pb.BenchConfig(size=(args.size[0], args.size[1]), video_stride=args.video_stride,
                             score_threshold=args.score, bootstrap=args.bootstrap, seed=args.seed,
                             sheet_frames=max(0, args.sheet_frames))
        cfg.validate()
    except ValueError as exc:
        return _error(str(exc))
    restoration = [] if args.restoration in ([], ["none"]) else args.restoration
    chosen = args.levels if args.levels is not None else range(len(pb.DEFAULT_LEVELS))
    if any(not 0 <= i < len(pb.DEFAULT_LEVELS) for i in chosen):
        return _error(f"--levels: indices 0..{len(pb.DEFAULT_LEVELS) - 1}, got {list(chosen)}")
    levels = [pb.DEFAULT_LEVELS[i] for i in dict.fromkeys(chosen)]
    if args.jobs < 1:
        return _error(f"--jobs must be >= 1, got {args.jobs}")
    if args.jobs > 1 and len(levels) > 1:
        return _run_jobs(args, list(dict.fromkeys(chosen)))
    if args.no_depth:
        args.depth_model = None
    elif args.depth_model is None:
        args.depth_model = default_depth_model(args.media)
        args.depth_preset = args.depth_preset or ("fastdepth" if args.depth_model else None)
    args.depth_preset = args.depth_preset or "depth-anything"
    if args.depth_model is not None and not args.depth_model.is_file():
        return _error(f"--depth-model {args.depth_model} is not a file")
    try:
        frames = pb.bench_frames(args.media, cfg)
    except (pb.BenchMediaError, ImageReadError, ValueError) as exc:
        return _error(str(exc))
    detectors, depth = {}, None
    enhancers = []
    try:
        prepare_folder(args.out_dir, "--out-dir")
        for model in args.detector_model or default_detectors(args.media):
            model = "" if model == SHIPPED_DETECTOR else model
            det = Detector(DetectorConfig(model=model, score_threshold=cfg.ap_floor, threads=args.threads))
            detectors[det.describe()] = det.detect
        if args.depth_model is not None:
            depth = DepthEstimator(depth_config_for_preset(args.depth_preset, str(args.depth_model),
                                                           threads=args.threads))
        from dap_led_ros.enhancer import Enhancer
        from dap_led_ros.runtime.detect_route import FROM_MODEL, UNMEASURED, DetectRoute, for_detector

        methods = {"degraded input": lambda x: x, "auto-exposure": auto_exposure,
                   "auto-exposure + CLAHE": auto_exposure_clahe}
        routed_methods = {}
        explicit_level = args.target_level > 0
        for model in restoration:
            e = Enhancer(replace(enhancer_config_from_args(args), model=model))
            enhancers.append(e)
            name = f"DAP-LED {model}" if model in SHIPPED_MODELS else f"DAP-LED {Path(model).stem}"
            # What detect_input routed feeds the detector with this model: its measured threshold,
            # restored frames at the level it records (scored so at every condition, unless told not to).
            route = DetectRoute.resolve(FROM_MODEL, e.checkpoint)
            rule = None if explicit_level or args.network_level else route.rule()
            if rule is None:
                methods[name] = pb.last_call_cached(e.enhance)
            else:
                name += f" (level {route.target_level:g})"
                methods[name] = pb.last_call_cached(lambda x, e=e, rule=rule: for_detector(rule, e.enhance(x)))
            if route.restore_below < UNMEASURED:
                # the plain row already carries the level (or the user's): routed reuses its arrays
                routed_methods[f"{name} routed (< {route.restore_below:g})"] = pb.routed(
                    methods[name], replace(route, target_level=0.0))
        methods.update(routed_methods)
    except (OutputError, DetectorModelError, DepthModelError, ValueError, RuntimeError, FileNotFoundError) as exc:
        return _error(str(exc))
    depth_score = None
    if depth is not None:
        output = depth.cfg.output
        depth_score = lambda pred, ref: depth_agreement(pred, ref, output, align="scale-shift")  # noqa: E731
    note = lambda s: print(f"[{time.monotonic() - started:6.0f} s] {s}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        results, sheet = pb.run_bench(frames, levels, methods, detectors, cfg,
                                      depth=depth.estimate if depth else None, depth_score=depth_score,
                                      progress=note)
    finally:
        for e in enhancers:
            e.close()
    elapsed = time.monotonic() - started
    command = "dap-led " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    results = {**results, "command": command, "wall_s": elapsed, "config": asdict(cfg), "media": str(args.media),
               "depth_model": str(args.depth_model) if depth else None}
    header = [f"Command: `{command}`", "",
              f"Machine: {platform.machine()}, {platform.processor() or platform.system()}; wall time "
              f"{elapsed:.0f} s", "", _frames_line(results)]
    return _write(args.out_dir, results, header, pb.contact_sheet(sheet, cfg.score_threshold))

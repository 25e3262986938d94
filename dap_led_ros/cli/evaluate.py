"""`dap-led eval`: PSNR/SSIM tables, plots and contact sheets."""
from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from dap_led_ros.cli.args import add_backend_args, enhancer_config_from_args, results_write_failed
from dap_led_ros.cli.evaluate_video import add_video_args, run_video
from dap_led_ros.enhancer import Enhancer, EnhancerConfig
from dap_led_ros.file_output import OutputError, prepare_folder
from dap_led_ros.imaging.image_io import ImageReadError
from dap_led_ros.perception.detection import DetectorConfig
from dap_led_ros.training.evaluate import (
    Method,
    auto_exposure,
    describe_machine,
    markdown_report,
    score_sets,
    set_frames,
    write_results,
)
from dap_led_ros.training.validation_sets import (
    DEFAULT_REAL_DIR,
    SetOptions,
    real_frames_dir,
    validation_sources,
)

_LIBRARY = importlib.import_module("dap_led_ros.training.evaluate")  # its docstring is the command's description


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="PSNR/SSIM and no-reference figures vs baselines",
                       description=_LIBRARY.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="Each output file in --out-dir appears complete or not at all (an earlier run's "
                              "files of the same names are replaced); --out-dir may not be or lie inside an "
                              "input folder.\nexit status: 0 done; 1 the results could not be written; 2 nothing "
                              "evaluated (bad option, input folder missing, --out-dir not writable, model not "
                              "loadable).")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for evaluation.md, eval.json, plot, sheets")
    p.add_argument("--ablation", default=None, help="use_prior=false checkpoint to score beside the model")
    p.add_argument("--pairs", nargs=2, type=Path, metavar=("INPUT_DIR", "TARGET_DIR"), default=None,
                   help="paired folders matched by relative file name")
    p.add_argument("--lolblur", type=Path, default=None, help="LOL-Blur root (low_blur_noise/, high_sharp_scaled/)")
    p.add_argument("--lolblur-split", default=None, help="'test' when the root holds train/ and test/")
    p.add_argument("--no-synthetic", action="store_true", help="skip the synthetic validation set")
    p.add_argument("--no-camera-set", action="store_true",
                   help="skip the second validation set (Debian photos through the camera model)")
    p.add_argument("--val2-seed", type=int, default=SetOptions.val2_seed, help="seed of the second validation set")
    p.add_argument("--no-cross", action="store_true",
                   help="skip the cross-model split (held-out photos through path 1 and path 2, calibrated noise)")
    p.add_argument("--cross-count", type=int, default=SetOptions.cross_count,
                   help="cross-model pairs per path (default: one per held-out photo)")
    p.add_argument("--cross-seed", type=int, default=SetOptions.cross_seed, help="seed of the cross-model split")
    p.add_argument("--no-nlm", action="store_true", help="skip the DAP-LED + NLM (leftover noise) rows")
    p.add_argument("--no-well-exposed", action="store_true",
                   help="skip the held-out clean photos scored against themselves (frames that need no help)")
    p.add_argument("--val-size", nargs=2, type=int, default=list(SetOptions.size), metavar=("H", "W"))
    p.add_argument("--val-count", type=int, default=None, help="synthetic pairs (default: two per validation photo)")
    p.add_argument("--val-seed", type=int, default=SetOptions.val_seed)
    p.add_argument("--real", type=Path, default=None,
                   help=f"real night frames for no-reference figures (default: {DEFAULT_REAL_DIR} when present)")
    p.add_argument("--no-real", action="store_true", help="skip the real night frames")
    p.add_argument("--sheet-rows", type=int, default=6, help="rows per contact sheet")
    add_backend_args(p)
    add_video_args(p)
    g = p.add_argument_group("downstream (--downstream)")
    g.add_argument("--downstream", action="store_true",
                   help="instead: the detector's precision/recall (and --depth-model's agreement) against the "
                        "clean frames; writes downstream.md, .json, _plot.png, _sheet_*.png (docs/evaluation.md)")
    g.add_argument("--downstream-score", type=float, default=DetectorConfig().score_threshold,
                   help="detector score threshold, for the reference boxes too (default: %(default)s, "
                        "the detector's own, as in detect_node and the demo)")
    g.add_argument("--detector-model", default="",
                   help="ONNX detector to score (any layout `dap-led detect` reads; default: the shipped one)")
    g.add_argument("--depth-model", type=Path, default=None, help="ONNX depth model to score too")
    g.add_argument("--depth-output", choices=("disparity", "depth"), default="disparity",
                   help="what --depth-model predicts (default: %(default)s)")
    p.set_defaults(func=run)


def _methods(args: argparse.Namespace) -> tuple[dict[str, Method], list[Enhancer]]:
    """The rows and the Enhancers to close. With --target-level, "DAP-LED" keeps the network's own
    level and a row "DAP-LED, target level L" (on the same backend) applies the exposure rule."""
    cfg = enhancer_config_from_args(args)
    model = Enhancer(replace(cfg, target_level=0.0))
    methods: dict[str, Method] = {"identity": lambda x: x, "auto-exposure": auto_exposure}
    enhancers = [model]
    if args.ablation:
        abl = Enhancer(replace(cfg, model=str(args.ablation), engine=None, target_level=0.0))
        enhancers.append(abl)
        methods["ablation (use_prior=false)"] = abl.enhance
    methods["DAP-LED"] = model.enhance
    if cfg.target_level > 0:
        ruled = Enhancer(replace(cfg, model=model.cfg.model, engine=model.cfg.engine), backend=model.backend)
        methods[target_row(cfg)] = ruled.enhance  # not closed: its backend is the model's
    return methods, enhancers


def target_row(cfg: EnhancerConfig) -> str:
    """The row name of the exposure rule's output."""
    strength = f", strength {cfg.target_strength:g}" if cfg.target_strength < 1 else ""
    return f"DAP-LED, target level {cfg.target_level:g}{strength}"


def _set_options(args: argparse.Namespace, real: Path | None) -> SetOptions:
    return SetOptions(size=tuple(args.val_size), synthetic=not args.no_synthetic, val_count=args.val_count,
                      val_seed=args.val_seed, camera=not args.no_camera_set, val2_seed=args.val2_seed,
                      cross=not args.no_cross, cross_count=args.cross_count, cross_seed=args.cross_seed,
                      well_exposed=not args.no_well_exposed, pairs=tuple(args.pairs) if args.pairs else None,
                      lolblur=args.lolblur, lolblur_split=args.lolblur_split, real=real)


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _command() -> str:
    return "dap-led " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _run_downstream(args: argparse.Namespace) -> int:
    """`--downstream`: the detector (and --depth-model) on clean, degraded and restored frames."""
    from dap_led_ros.perception import downstream as ds
    from dap_led_ros.perception.depth import DepthConfig, DepthEstimator, DepthModelError
    from dap_led_ros.perception.detection import Detector, DetectorModelError

    if args.depth_model is not None and not args.depth_model.is_file():
        print(f"error: --depth-model {args.depth_model} is not a file", file=sys.stderr)
        return 2
    for d in args.pairs or ():
        if not d.is_dir() or _inside(args.out_dir.resolve(), d.resolve()):
            print(f"error: paired folder {d} does not exist or holds --out-dir", file=sys.stderr)
            return 2
    cfg = ds.DownstreamConfig(sheet_rows=max(0, args.sheet_rows))
    depth = None
    try:
        prepare_folder(args.out_dir, "--out-dir")
        detector = Detector(DetectorConfig(model=args.detector_model, score_threshold=args.downstream_score,
                                           threads=args.threads))
        if args.depth_model is not None:
            depth = DepthEstimator(DepthConfig(model=str(args.depth_model), threads=args.threads,
                                               output=args.depth_output))
        methods, enhancers = _methods(args)
    except (OutputError, DetectorModelError, DepthModelError, ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    methods = {("degraded input" if k == "identity" else k): v for k, v in methods.items()}
    machine = describe_machine(enhancers[0].backend.describe())
    opts = replace(_set_options(args, real=None), well_exposed=False, lolblur=None, cross=False)
    sets, sheets = {}, {}
    try:
        for source in validation_sources(opts, short_titles=True):
            frames = set_frames(source, _note)
            if frames is None:
                continue
            sheets[source.tag] = []
            sets[source.title] = ds.evaluate_set(frames, methods, detector.detect, cfg,
                                                 depth.estimate if depth else None, args.depth_output,
                                                 sheets[source.tag])
    except (FileNotFoundError, ValueError, ImageReadError, DetectorModelError, DepthModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        for e in enhancers:
            e.close()
    if not any(s["frames"] for s in sets.values()):
        print("error: nothing to evaluate (no synthetic set, camera set or pairs)", file=sys.stderr)
        return 2
    results = {"command": _command(), "machine": machine,
               "detector": detector.describe(), "score_threshold": args.downstream_score,
               "depth_model": str(args.depth_model) if depth else None, "sets": sets}
    try:
        report = ds.write_outputs(args.out_dir, results, sheets, cfg)
    except (OSError, ValueError) as exc:
        return results_write_failed(args.out_dir, exc)
    print(report)
    print(f"wrote {args.out_dir / 'downstream.md'}, downstream.json, downstream_plot.png, downstream_sheet_*.png")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.downstream and args.video:
        print("error: --downstream and --video are separate evaluations: give one of them", file=sys.stderr)
        return 2
    if args.downstream:
        return _run_downstream(args)
    if args.video:
        return run_video(args)
    for d in args.pairs or ():
        if not d.is_dir():
            print(f"error: paired folder {d} does not exist", file=sys.stderr)
            return 2
    try:
        opts = _set_options(args, real=real_frames_dir(args.real, skip=args.no_real))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out_dir: Path = args.out_dir
    for folder in opts.folders():
        if _inside(out_dir.resolve(), Path(folder).resolve()):
            print(f"error: --out-dir {out_dir} must not be the input folder {folder} or lie inside it",
                  file=sys.stderr)
            return 2
    try:  # before the models load: the results can be written
        prepare_folder(out_dir, "--out-dir")
    except OutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        methods, enhancers = _methods(args)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"error: cannot load a model: {exc}", file=sys.stderr)
        return 2
    machine = describe_machine(enhancers[0].backend.describe())
    try:
        scored, sheets = score_sets(validation_sources(opts), methods, args.sheet_rows, nlm=not args.no_nlm,
                                    skipped=_note)
    except (FileNotFoundError, ValueError, ImageReadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        for e in enhancers:
            e.close()
    results = {"machine": machine, **scored}
    if not results["paired"] and not results["real"] and not results.get("well_exposed"):
        print("error: nothing to evaluate (no synthetic set, well-exposed photos, pairs, LOL-Blur or real frames)",
              file=sys.stderr)
        return 2
    report = markdown_report(results, _command())
    try:
        write_results(out_dir, report, results, sheets, [m for m in methods if m != "identity"])
    except (OSError, ValueError) as exc:
        return results_write_failed(out_dir, exc)
    print(report)
    print(f"wrote {out_dir / 'evaluation.md'}, eval.json, eval_plot.png and contact sheets")
    return 0

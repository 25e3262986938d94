"""`dap-led eval`: PSNR/SSIM tables, plots and contact sheets."""
from __future__ import annotations

import argparse
import importlib
import json
import platform
import shlex
import sys
from pathlib import Path

from dap_led_ros.cli.args import add_backend_args, enhancer_config_from_args, results_write_failed
from dap_led_ros.cli.evaluate_video import add_video_args, run_video
from dap_led_ros.enhancer import Enhancer
from dap_led_ros.file_output import OutputError, atomic_output, prepare_folder, write_text
from dap_led_ros.imaging.image_io import ImageReadError, write_image
from dap_led_ros.perception.detection import DetectorConfig
from dap_led_ros.training.evaluate import (
    DEFAULT_REAL_DIR,
    Method,
    auto_exposure,
    camera_pairs,
    cpu_count,
    folder_pairs,
    grid_sheet,
    markdown_report,
    nlm_denoise,
    score_pairs,
    score_real,
    score_well_exposed,
    synthetic_pairs,
    write_plot,
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
    p.add_argument("--val2-seed", type=int, default=4321, help="seed of the second validation set")
    p.add_argument("--no-nlm", action="store_true", help="skip the DAP-LED + NLM (leftover noise) rows")
    p.add_argument("--no-well-exposed", action="store_true",
                   help="skip the held-out clean photos scored against themselves (frames that need no help)")
    p.add_argument("--val-size", nargs=2, type=int, default=[400, 640], metavar=("H", "W"))
    p.add_argument("--val-count", type=int, default=None, help="synthetic pairs (default: two per validation photo)")
    p.add_argument("--val-seed", type=int, default=1234)
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
    cfg = enhancer_config_from_args(args)
    model = Enhancer(cfg)
    methods: dict[str, Method] = {"identity": lambda x: x, "auto-exposure": auto_exposure}
    enhancers = [model]
    if args.ablation:
        from dataclasses import replace

        abl = Enhancer(replace(cfg, model=str(args.ablation), engine=None))
        enhancers.append(abl)
        methods["ablation (use_prior=false)"] = abl.enhance
    methods["DAP-LED"] = model.enhance
    return methods, enhancers


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _write_results(out_dir: Path, report: str, results: dict, sheets: dict[str, list], cols: list[str]) -> None:
    """The report, the figures as JSON, the plot and the sheets, each file written whole or not at all."""
    write_text(out_dir / "evaluation.md", report, force=True)
    write_text(out_dir / "eval.json", json.dumps(results, indent=2, default=str), force=True)
    with atomic_output(out_dir / "eval_plot.png", force=True) as tmp:
        write_plot(results, tmp)
    for name, samples in sheets.items():
        if samples:
            write_image(out_dir / f"contact_sheet_{name}.png", grid_sheet(samples, cols), force=True)


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
    machine = f"{platform.processor() or platform.machine()}, {cpu_count()} CPU cores, " \
              f"backend {enhancers[0].backend.describe()}"
    h, w = args.val_size
    sources = [] if args.no_synthetic else [("synthetic", f"Synthetic validation set ({w}x{h}, seed {args.val_seed})",
                                             lambda: synthetic_pairs((h, w), args.val_count, args.val_seed))]
    if not args.no_camera_set:
        sources.append(("camera", f"Second validation set: camera model ({w}x{h}, seed {args.val2_seed})",
                        lambda: camera_pairs((h, w), None, args.val2_seed)))
    if args.pairs:
        from dap_led_ros.training.datasets import PairedFolder

        sources.append(("pairs", f"Paired folders {args.pairs[0]} -> {args.pairs[1]}",
                        lambda: folder_pairs(PairedFolder(args.pairs[0], args.pairs[1]))))
    sets, sheets = {}, {}
    try:
        for tag, title, pairs in sources:
            try:
                frames = pairs()
            except ValueError as exc:
                if tag != "camera":
                    raise
                print(f"note: second validation set skipped: {exc}", file=sys.stderr)
                continue
            sheets[tag] = []
            sets[title] = ds.evaluate_set(frames, methods, detector.detect, cfg,
                                          depth.estimate if depth else None, args.depth_output, sheets[tag])
    except (FileNotFoundError, ValueError, ImageReadError, DetectorModelError, DepthModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        for e in enhancers:
            e.close()
    if not any(s["frames"] for s in sets.values()):
        print("error: nothing to evaluate (no synthetic set, camera set or pairs)", file=sys.stderr)
        return 2
    results = {"command": "dap-led " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
               "machine": machine,
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
    if args.pairs:
        for d in args.pairs:
            if not d.is_dir():
                print(f"error: paired folder {d} does not exist", file=sys.stderr)
                return 2
    real_dir = args.real if args.real is not None else (DEFAULT_REAL_DIR if DEFAULT_REAL_DIR.is_dir() else None)
    if args.no_real:
        real_dir = None
    elif args.real is not None and not args.real.is_dir():
        print(f"error: real-frame folder {args.real} does not exist", file=sys.stderr)
        return 2
    out_dir: Path = args.out_dir
    inputs = [*(args.pairs or ()), *([real_dir] if real_dir is not None else []),
              *([args.lolblur] if args.lolblur else [])]
    for folder in inputs:
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
    results: dict = {"machine": f"{platform.processor() or platform.machine()}, {cpu_count()} CPU cores, "
                                f"backend {enhancers[0].backend.describe()}",
                     "paired": {}, "real": None}
    sheets: dict[str, list] = {}
    post = {} if args.no_nlm else {"DAP-LED + NLM": ("DAP-LED", nlm_denoise)}
    try:
        if not args.no_synthetic:
            h, w = args.val_size
            key = f"Synthetic validation set ({w}x{h}, seed {args.val_seed})"
            sheets["synthetic"] = []
            results["paired"][key] = score_pairs(synthetic_pairs((h, w), args.val_count, args.val_seed), methods,
                                                 sheets["synthetic"], args.sheet_rows, post)
        if not args.no_camera_set:
            h, w = args.val_size
            key = f"Second validation set: camera model on other photos ({w}x{h}, seed {args.val2_seed})"
            sheets["camera"] = []
            try:
                results["paired"][key] = score_pairs(camera_pairs((h, w), None, args.val2_seed), methods,
                                                     sheets["camera"], args.sheet_rows, post)
            except ValueError as exc:
                print(f"note: second validation set skipped: {exc}", file=sys.stderr)
        if not args.no_well_exposed:
            from dap_led_ros.training.datasets import well_exposed_photos

            h, w = args.val_size
            results["well_exposed"] = {
                "what": f"held-out clean photos ({w}x{h})",
                "rows": score_well_exposed(well_exposed_photos((h, w)), methods)}
        if args.pairs:
            from dap_led_ros.training.datasets import PairedFolder

            ds = PairedFolder(args.pairs[0], args.pairs[1])
            sheets["pairs"] = []
            results["paired"][f"Paired folders {args.pairs[0]} -> {args.pairs[1]}"] = score_pairs(
                folder_pairs(ds), methods, sheets["pairs"], args.sheet_rows)
        if args.lolblur:
            from dap_led_ros.training.datasets import LolBlurFolder

            ds = LolBlurFolder(args.lolblur, split=args.lolblur_split)
            sheets["lolblur"] = []
            results["paired"][f"LOL-Blur {args.lolblur}"] = score_pairs(folder_pairs(ds), methods,
                                                                         sheets["lolblur"], args.sheet_rows)
        if real_dir is not None:
            sheets["real"] = []
            real_methods = {k: v for k, v in methods.items() if k != "identity"}
            figs, n = score_real(real_dir, real_methods, sheets["real"], args.sheet_rows)
            if n:
                results["real"] = {"folder": str(real_dir), "n": n, "figures": figs}
    except (FileNotFoundError, ValueError, ImageReadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        for e in enhancers:
            e.close()
    if not results["paired"] and not results["real"] and not results.get("well_exposed"):
        print("error: nothing to evaluate (no synthetic set, well-exposed photos, pairs, LOL-Blur or real frames)",
              file=sys.stderr)
        return 2
    command = "dap-led " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = markdown_report(results, command)
    try:
        _write_results(out_dir, report, results, sheets, [m for m in methods if m != "identity"])
    except (OSError, ValueError) as exc:
        return results_write_failed(out_dir, exc)
    print(report)
    print(f"wrote {out_dir / 'evaluation.md'}, eval.json, eval_plot.png and contact sheets")
    return 0



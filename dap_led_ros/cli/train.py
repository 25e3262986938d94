"""`dap-led train` (and `torchrun -m dap_led_ros.cli train ...` for several processes)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dap_led_ros.file_output import OutputError, prepare_folder
from dap_led_ros.training.config import TrainConfig
from dap_led_ros.training.state import STATE_FILE
from dap_led_ros.training.train import train


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a DAP-LED model",
                       description="Train DAP-LED on synthetic pairs from offline clean photos (or LOL-Blur). "
                                   "Multi-GPU / multi-process: torchrun --nproc_per_node=N -m dap_led_ros.cli train ...")
    _add_args(p)
    p.set_defaults(func=run)


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, required=True, help="training YAML (see config/train_tiny.yaml)")
    p.add_argument("--out", type=Path, required=True, help="run folder (logs, state.pt, best.*, last.*)")
    p.add_argument("--steps", type=int, default=None, help="override the total number of steps")
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="resume from a state.pt (default: OUT/state.pt)")
    p.add_argument("--resume-or-start", action="store_true",
                   help="resume from OUT/state.pt when it exists, else start: the same command continues a run")
    p.add_argument("--stop-after", type=int, default=None,
                   help="run at most this many steps now (the schedule still spans --steps)")
    p.add_argument("--seed", type=int, default=None, help="override the seed (data stream and initialisation)")
    p.add_argument("--init-from", default=None,
                   help="start from this checkpoint's weights (fresh optimiser and schedule); overrides init_from")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = TrainConfig.load(args.config)
        if args.steps is not None:
            cfg.steps = args.steps
        if args.seed is not None:
            cfg.seed = args.seed
        if args.init_from is not None:
            cfg.init_from = args.init_from
        cfg.validate()
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    resume = None
    if args.resume is None and args.resume_or_start and (args.out / STATE_FILE).is_file():
        resume = args.out / STATE_FILE
    elif args.resume is not None:
        resume = args.out / STATE_FILE if args.resume == "auto" else Path(args.resume)
        if not resume.is_file():
            print(f"error: no training state to resume from at {resume}", file=sys.stderr)
            return 2
    if int(os.environ.get("RANK", "0")) == 0:
        try:  # before the data and model are built
            prepare_folder(args.out, "run folder --out")
        except OutputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        result = train(cfg, args.out, resume=resume, stop_after=args.stop_after, progress=not args.no_progress)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result))
    return 0

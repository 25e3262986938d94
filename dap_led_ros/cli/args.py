"""Argument types and option groups shared by the `dap-led` commands."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the argument types stay light; the option groups import the runtime when used
    from dap_led_ros.enhancer import Enhancer, EnhancerConfig


def frame_size(text: str) -> tuple[int, int]:
    """argparse type for a frame size: 'WxH' -> (width, height), both positive."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 640x480, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def assignment(shape: str, empty_value: bool = False):
    """argparse type for 'NAME:=VALUE' -> (NAME, VALUE); `shape` names the form in the error."""
    def parse(text: str) -> tuple[str, str]:
        name, sep, value = text.partition(":=")
        if not sep or not name or not (value or empty_value):
            raise argparse.ArgumentTypeError(f"expected {shape}, got '{text}'")
        return name, value
    return parse


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


def add_backend_args(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that runs the network: EnhancerConfig's defaults and
    descriptions (the offline commands default to the quality model)."""
    from dap_led_ros.enhancer import TILE_MODES, EnhancerConfig

    d, about = EnhancerConfig(), {f.name: f.metadata["help"] for f in dataclasses.fields(EnhancerConfig)}
    p.add_argument("--model", default=d.model, help=about["model"] + " (default: quality)")
    p.add_argument("--backend", default=d.backend, help=about["backend"] + " (default: %(default)s)")
    p.add_argument("--device", default=d.device, help=about["device"] + " (default: %(default)s)")
    p.add_argument("--engine", default=d.engine, help=about["engine"])
    p.add_argument("--engine-config", default=d.engine_config, help=about["engine_config"])
    p.add_argument("--cache-dir", default=d.cache_dir, help=about["cache_dir"])
    p.add_argument("--build-engine", action="store_true", default=d.build_engine, help=about["build_engine"])
    p.add_argument("--threads", type=_at_least(0), default=d.threads, help=about["threads"])
    p.add_argument("--tile-max-pixels", "--max-pixels", dest="tile_max_pixels", type=_at_least(1),
                   default=d.tile_max_pixels, help=about["tile_max_pixels"] + " (default: %(default)s)")
    p.add_argument("--tile-size", type=int, default=d.tile_size, help=about["tile_size"] + " (default: %(default)s)")
    p.add_argument("--tile-overlap", type=int, default=d.tile_overlap,
                   help=about["tile_overlap"] + " (default: %(default)s)")
    p.add_argument("--tile-mode", choices=TILE_MODES, default=d.tile_mode,
                   help=about["tile_mode"] + " (default: %(default)s)")
    p.add_argument("--target-level", type=float, default=d.target_level,
                   help=about["target_level"] + " (default: %(default)s)")
    p.add_argument("--target-strength", type=float, default=d.target_strength,
                   help=about["target_strength"] + " (default: %(default)s)")
    p.add_argument("--exposure-smoothing", type=float, default=d.exposure_smoothing,
                   help=about["exposure_smoothing"] + " (default: %(default)s)")


def add_burst_arg(p: argparse.ArgumentParser) -> None:
    """--burst, for the commands that restore video streams."""
    from dap_led_ros.enhancer import EnhancerConfig

    about = {f.name: f.metadata["help"] for f in dataclasses.fields(EnhancerConfig)}
    p.add_argument("--burst", action="store_true", default=EnhancerConfig.burst, help=about["burst"])


def enhancer_config_from_args(args: argparse.Namespace) -> EnhancerConfig:
    from dap_led_ros.enhancer import EnhancerConfig

    return EnhancerConfig(model=args.model, backend=args.backend, device=args.device, engine=args.engine,
                          engine_config=args.engine_config, cache_dir=args.cache_dir, build_engine=args.build_engine,
                          threads=args.threads, tile_max_pixels=args.tile_max_pixels, tile_size=args.tile_size,
                          tile_overlap=args.tile_overlap, tile_mode=args.tile_mode,
                          target_level=args.target_level, target_strength=args.target_strength,
                          exposure_smoothing=args.exposure_smoothing)


def enhancer_from_args(args: argparse.Namespace, **settings: object) -> Enhancer | None:
    """The Enhancer the options ask for (`settings`: more EnhancerConfig fields, e.g. temporal=True),
    or None after printing why it cannot be loaded."""
    from dap_led_ros.enhancer import Enhancer

    try:
        return Enhancer(dataclasses.replace(enhancer_config_from_args(args), **settings))
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"error: cannot load the model: {exc}", file=sys.stderr)
        return None


def results_write_failed(out_dir: object, exc: Exception) -> int:
    """Says why a command's results could not be written to out_dir; returns that exit status (1)."""
    from dap_led_ros.file_output import os_error_text

    print(f"error: cannot write the results to {out_dir}: "
          f"{os_error_text(exc) if isinstance(exc, OSError) else exc}", file=sys.stderr)
    return 1


def parse_size(text: str) -> tuple[int, int]:
    """argparse type: 'WxH' -> (H, W), the order the parity and bench loops use."""
    w, h = frame_size(text)
    return h, w



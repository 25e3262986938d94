"""cv_bridge where this process has a working one; the package's own conversion elsewhere.

Every ROS install has cv_bridge (ros-<distro>-cv-bridge), and its Python ``CvBridge`` runs the same
OpenCV conversions as dap_led_ros/imaging/image_encoding.py (test/test_cv_bridge_parity.py holds
the vectors, taken from cv_bridge's sources and tests). Where ``import cv_bridge`` works *and* the
bridge passes a self-check, frames are converted by cv_bridge; otherwise by the package's own code.

The self-check compares, on tiny messages, cv_bridge's result with the documented one (which the
package's conversion gives; the parity vectors pin it to cv_bridge's semantics). It runs once when
the path is first needed (a bgr8 frame decoded, an RGB image encoded to bgr8): a cv_bridge that
fails it is not used at all. This is what catches a cv_bridge that imports but cannot work here,
whatever its name: PyPI's ``cv-bridge`` (a 2020 pure-Python ROS 1 port: ``ndarray.tostring`` is
gone in NumPy 2, rows are read without their ``step``, no depth scaling), a ROS 1 cv_bridge, or one
built for another OpenCV or NumPy than the ones imported. Then each kind of frame (encoding, row
padding, trailing bytes, byte order; for encoding the source and target) is checked the first time
one arrives, and a kind cv_bridge gets wrong (ROS 2's Python layer reads a ``step`` that is not a
whole number of pixels wrongly; with NumPy 2 it fails on big-endian messages, ``newbyteorder``)
is converted by the package's own code from then on, logged once. Fields are always validated by
image_encoding.validate_image_fields first, so a malformed frame is refused with the package's
error whichever path converts it.

Not sent to cv_bridge: Bayer with ``demosaic: edge_aware`` (cv_bridge demosaics bilinearly only),
output in yuv422/yuv422_yuy2/bayer_* (cv_bridge converts to none of them), an encoding spelled
other than cv_bridge's lower-case names, and an array with an alpha channel but no colour.
``DAP_LED_CV_BRIDGE=off`` in the environment keeps cv_bridge out entirely.
"""
from __future__ import annotations

import array
import importlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sensor_msgs.msg import Image

from dap_led_ros.imaging.image_encoding import (
    DEFAULT_MAX_INPUT_PIXELS,
    SUPPORTED_ENCODINGS,
    DecodedImage,
    bytes_per_pixel,
    decode_image,
    encode_image,
    normalize_encoding,
    validate_image_fields,
)

OWN = "own"
CV_BRIDGE = "cv_bridge"
SWITCH = "DAP_LED_CV_BRIDGE"  # "off" (or 0/false/no/own): never use cv_bridge
NOT_IMPORTABLE = "cv_bridge is not importable here: it comes with a ROS install (ros-<distro>-cv-bridge)"

# What cv_bridge can produce from an RGB/grey array of 8 or 16 bits: the RGB and GRAY rows of
# cv_bridge.cpp getConversionCodes() (no yuv422 or Bayer target). rgba16/bgra16 are not ours.
ENCODE_TARGETS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "rgb16", "bgr16", "mono16")
_SIXTEEN_BIT = ("rgb16", "bgr16", "mono16")
_PROBE_H, _PROBE_W = 4, 6  # Bayer needs 3x3, yuv422 an even width


def _log():
    from rclpy.logging import get_logger
    return get_logger("dap_led_ros.image_conversion")


def _brief(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return f"{type(exc).__name__}: {text[:160]}{'...' if len(text) > 160 else ''}"


@dataclass
class _Selection:
    path: str
    reason: str
    bridge: Any = None
    kinds: dict[tuple, str] = field(default_factory=dict)  # kind -> "" (cv_bridge) or why own


_lock = threading.Lock()
_selection: _Selection | None = None


def conversion_path() -> str:
    """"cv_bridge" when this process converts Image messages with cv_bridge, else "own"."""
    return _selected().path


def conversion_summary() -> str:
    """One line for /diagnostics (`image_conversion`): "cv_bridge", "cv_bridge; own for 2 kinds:
    bgr8 odd-padded, ..." or "own: <why cv_bridge is not used>"."""
    sel = _selected()
    if sel.bridge is None:
        return f"own: {sel.reason}"
    own = sorted(_kind_label(k) for k, why in sel.kinds.items() if why)
    if not own:
        return CV_BRIDGE
    shown = ", ".join(own[:3]) + (", ..." if len(own) > 3 else "")
    return f"{CV_BRIDGE}; own for {len(own)} kind{'s' if len(own) > 1 else ''}: {shown}"


def conversion_details() -> dict[str, Any]:
    """The path, why, and each kind of frame checked so far with the path it takes."""
    sel = _selected()
    with _lock:
        kinds = {_kind_label(k): (f"{OWN}: {why}" if why else CV_BRIDGE) for k, why in sel.kinds.items()}
    return {"path": sel.path, "reason": sel.reason, "kinds": kinds}


def reset_conversion_path() -> None:
    """Forget the choice (tests; after changing DAP_LED_CV_BRIDGE): the next frame selects again."""
    global _selection
    with _lock:
        _selection = None


def _selected() -> _Selection:
    global _selection
    with _lock:
        if _selection is None:
            _selection = _select()
            if _selection.bridge is not None:
                _log().info(f"image conversion: cv_bridge ({_selection.reason})")
            else:
                _log().info(f"image conversion: the package's own ({_selection.reason})")
        return _selection


def _select() -> _Selection:
    switch = os.environ.get(SWITCH, "").strip().lower()
    if switch in ("0", "off", "false", "no", OWN):
        return _Selection(OWN, f"{SWITCH}={switch}")
    try:
        module = importlib.import_module("cv_bridge")
    except ModuleNotFoundError as exc:
        if exc.name == "cv_bridge" or exc.name is None:
            return _Selection(OWN, NOT_IMPORTABLE)
        return _Selection(OWN, f"cv_bridge fails to import ({_brief(exc)})")
    except Exception as exc:  # a cv_bridge that breaks on import (missing library, ABI mismatch, ...)
        return _Selection(OWN, f"cv_bridge fails to import ({_brief(exc)})")
    where = getattr(module, "__file__", None) or "cv_bridge"
    try:
        bridge = module.CvBridge()
        sel = _Selection(CV_BRIDGE, f"{where} passed the self-check", bridge)
        for key in (("bgr8", "none", False, False), ("encode", "rgb8", "bgr8", False)):
            why = _probe(bridge, key)
            if why:
                return _Selection(OWN, f"{where} imports but failed the self-check on {_kind_label(key)}: {why}")
            sel.kinds[key] = ""
    except Exception as exc:
        return _Selection(OWN, f"{where} imports but failed the self-check: {_brief(exc)}")
    return sel


def _kind_label(key: tuple) -> str:
    if key[0] == "encode":
        _, source, target, big = key
        return f"{source}->{target}{' big-endian' if big else ''}"
    name, padding, trailing, big = key
    parts = [name]
    parts += {"none": [], "whole_pixels": ["padded"], "other": ["odd-padded"]}[padding]
    parts += ["trailing bytes"] if trailing else []
    parts += ["big-endian"] if big else []
    return " ".join(parts)


def _kind_uses_bridge(sel: _Selection, key: tuple) -> bool:
    """Probe a kind of frame the first time it comes (under the lock: probes are tiny)."""
    with _lock:
        if key not in sel.kinds:
            try:
                why = _probe(sel.bridge, key)
            except Exception as exc:  # noqa: BLE001 - anything cv_bridge raises means "not this kind"
                why = _brief(exc)
            sel.kinds[key] = why
            if why:
                _log().warning(f"image conversion: cv_bridge is not used for {_kind_label(key)} "
                               f"frames, the package's own conversion is ({why})")
        return not sel.kinds[key]


def _give_up_kind(sel: _Selection, key: tuple, exc: BaseException) -> None:
    with _lock:
        sel.kinds[key] = f"failed on a frame ({_brief(exc)})"
    _log().warning(f"image conversion: cv_bridge failed on a {_kind_label(key)} frame; the package's "
                   f"own conversion is used for those from now on ({_brief(exc)})")


# ----------------------------------------------------------------------------- decoding

def decode(msg: Image, max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS, demosaic: str = "bilinear",
           conversion: str | None = None) -> DecodedImage:
    """A sensor_msgs/Image as DecodedImage, by cv_bridge or the package's own conversion.

    conversion None: cv_bridge where it is usable for this kind of frame (see the module's doc);
    "own": the package's conversion; "cv_bridge": cv_bridge or an error (no fallback; tests).
    Raises ImageDecodeError for a malformed or unsupported message, whatever the path.
    """
    name, width, height, step, buffer = validate_image_fields(
        msg.encoding, msg.width, msg.height, msg.step, msg.data,
        max_input_pixels=max_input_pixels, demosaic=demosaic)

    def own() -> DecodedImage:
        return decode_image(msg.encoding, width, height, step, msg.is_bigendian, msg.data,
                            max_input_pixels=max_input_pixels, demosaic=demosaic)

    if conversion == OWN:
        return own()
    sel = _selected()
    if conversion == CV_BRIDGE:
        if sel.bridge is None:
            raise RuntimeError(f"cv_bridge conversion requested, but {sel.reason}")
        if demosaic != "bilinear":
            raise ValueError("cv_bridge demosaics bilinearly only")
        return _decode_with(sel.bridge, msg, name, width, height)
    if conversion is not None:
        raise ValueError(f"conversion must be None, {OWN!r} or {CV_BRIDGE!r}, got {conversion!r}")
    if sel.bridge is None or demosaic != "bilinear" or msg.encoding != name:
        return own()
    key = _decode_kind(name, width, height, step, buffer.size, bool(msg.is_bigendian))
    if not _kind_uses_bridge(sel, key):
        return own()
    try:
        return _decode_with(sel.bridge, msg, name, width, height)
    except Exception as exc:  # noqa: BLE001 - a kind that passed its probe and still fails
        _give_up_kind(sel, key, exc)
        return own()


def _decode_kind(name: str, width: int, height: int, step: int, size: int, big: bool) -> tuple:
    pixel = bytes_per_pixel(name)
    pad = step - width * pixel
    padding = "none" if pad == 0 else "whole_pixels" if pad % pixel == 0 else "other"
    return (name, padding, size > step * height, big)


def _decode_with(bridge: Any, msg: Image, name: str, width: int, height: int) -> DecodedImage:
    """cv_bridge's imgmsg_to_cv2 to rgb8 (passthrough for rgb8: no copy where rows are unpadded),
    plus the alpha channel and the 16-bit values, as DecodedImage holds them."""
    rgb = np.asarray(bridge.imgmsg_to_cv2(msg, "passthrough" if name == "rgb8" else "rgb8"))
    _expect(rgb, (height, width, 3), np.uint8)
    if np.may_share_memory(rgb, np.frombuffer(msg.data, np.uint8)):
        rgb = rgb.view()  # a view of the message: processing must not write into it
        rgb.flags.writeable = False
    alpha = full_depth = None
    if name in ("rgba8", "bgra8"):
        raw = np.asarray(bridge.imgmsg_to_cv2(msg, "passthrough"))
        _expect(raw, (height, width, 4), np.uint8)
        alpha = np.ascontiguousarray(raw[:, :, 3])
    elif name.endswith("16"):
        target = "passthrough" if name in ("mono16", "rgb16") else "rgb16"
        full = np.asarray(bridge.imgmsg_to_cv2(msg, target))
        _expect(full, (height, width) if name == "mono16" else (height, width, 3), np.uint16)
        full_depth = np.ascontiguousarray(full.astype(np.uint16, copy=False))
    return DecodedImage(rgb=rgb, encoding=name, alpha=alpha, full_depth=full_depth)


def _expect(image: np.ndarray, shape: tuple[int, ...], dtype: type) -> None:
    """cv_bridge's result has the shape and depth asked for (any byte order: astype makes it native)."""
    want = np.dtype(dtype)
    if image.shape != shape or (image.dtype.kind, image.dtype.itemsize) != (want.kind, want.itemsize):
        raise RuntimeError(f"cv_bridge returned {image.dtype} {image.shape}, expected {np.dtype(dtype)} {shape}")


# ----------------------------------------------------------------------------- encoding

def encode(image: Any, encoding: str, alpha: np.ndarray | None = None, bigendian: bool = False,
           conversion: str | None = None) -> Image | None:
    """An Image message (header left empty) made by cv_bridge, or None where the package's own
    encode_image is to make it (conversion "own", cv_bridge unusable, a kind cv_bridge does not
    convert or got wrong in its check, or an input the own path refuses with its error)."""
    if conversion == OWN:
        return None
    if conversion not in (None, CV_BRIDGE):
        raise ValueError(f"conversion must be None, {OWN!r} or {CV_BRIDGE!r}, got {conversion!r}")
    sel = _selected()
    if conversion == CV_BRIDGE and sel.bridge is None:
        raise RuntimeError(f"cv_bridge conversion requested, but {sel.reason}")
    try:
        target = normalize_encoding(encoding)
    except ValueError:
        target = None
    source = _source_encoding(image, target, alpha) if target in ENCODE_TARGETS else None
    if source is None:
        if conversion == CV_BRIDGE:
            raise ValueError(f"cv_bridge does not convert this array to {encoding!r}")
        return None
    big = bool(bigendian) and target in _SIXTEEN_BIT
    if conversion == CV_BRIDGE:
        return _encode_with(sel.bridge, image, source, target, alpha, big)
    if sel.bridge is None:
        return None
    key = ("encode", source, target, big)
    if not _kind_uses_bridge(sel, key):
        return None
    try:
        return _encode_with(sel.bridge, image, source, target, alpha, big)
    except Exception as exc:  # noqa: BLE001
        _give_up_kind(sel, key, exc)
        return None


def _source_encoding(image: Any, target: str, alpha: Any) -> str | None:
    """The encoding cv_bridge is to read `image` as; None: not for cv_bridge (the own path
    converts it, or refuses it with the package's error)."""
    if not isinstance(image, np.ndarray) or image.dtype not in (np.uint8, np.uint16) or 0 in image.shape:
        return None
    colour = image.ndim == 3 and image.shape[2] == 3
    if not (colour or image.ndim == 2):
        return None
    eight = image.dtype == np.uint8
    if alpha is not None and target in ("rgba8", "bgra8"):
        valid = (isinstance(alpha, np.ndarray) and alpha.dtype == np.uint8 and alpha.shape == image.shape[:2])
        return "rgba8" if valid and colour and eight else None
    return ("rgb8" if eight else "rgb16") if colour else ("mono8" if eight else "mono16")


def _encode_with(bridge: Any, image: np.ndarray, source: str, target: str, alpha: np.ndarray | None,
                 big: bool) -> Image:
    """CvImage(image, source) -> cvtColor(target) -> message, through CvBridge's public calls."""
    arr = np.dstack((image, alpha)) if source == "rgba8" else np.ascontiguousarray(image)
    out = arr if source == target else np.asarray(bridge.imgmsg_to_cv2(bridge.cv2_to_imgmsg(arr, source), target))
    if big:
        out = out.astype(">u2")
    msg = bridge.cv2_to_imgmsg(out, target)
    msg.is_bigendian = 1 if msg.is_bigendian else 0
    return msg


# ----------------------------------------------------------------------------- self-check

def _probe(bridge: Any, key: tuple) -> str:
    """"" when cv_bridge converts this kind of frame as documented, else what went wrong."""
    rng = np.random.default_rng(20)
    if key[0] == "encode":
        _, source, target, big = key
        shape = (_PROBE_H, _PROBE_W) if source.startswith("mono") else (_PROBE_H, _PROBE_W, 3)
        dtype = np.uint16 if source.endswith("16") else np.uint8
        image = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
        alpha = rng.integers(0, 256, shape[:2], dtype=np.uint8) if source == "rgba8" else None
        want = encode_image(image, target, alpha=alpha, bigendian=big)
        got = _encode_with(bridge, image, source, target, alpha, big)
        fields = ("encoding", "width", "height", "step", "is_bigendian")
        for name in fields:
            if getattr(got, name) != getattr(want, name):
                return f"{name} {getattr(got, name)!r}, expected {getattr(want, name)!r}"
        return "" if bytes(got.data) == want.data else "different pixel values"
    name, padding, trailing, big = key
    pixel = bytes_per_pixel(name)
    pad = {"none": 0, "whole_pixels": pixel, "other": 1}[padding]
    step = _PROBE_W * pixel + pad
    data = rng.integers(0, 256, step * _PROBE_H + (3 if trailing else 0), dtype=np.uint8).tobytes()
    msg = Image(height=_PROBE_H, width=_PROBE_W, encoding=name, is_bigendian=int(big), step=step,
                data=array.array("B", data))
    want = decode_image(name, _PROBE_W, _PROBE_H, step, big, data)
    got = _decode_with(bridge, msg, name, _PROBE_W, _PROBE_H)
    for part in ("rgb", "alpha", "full_depth"):
        a, b = getattr(got, part), getattr(want, part)
        if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
            return f"different {part} values"
    return ""


def probe_kinds() -> list[tuple]:
    """Every kind of frame the self-check knows (the parity test runs them all)."""
    kinds: list[tuple] = []
    for name in SUPPORTED_ENCODINGS:
        paddings = ("none", "whole_pixels") + (("other",) if bytes_per_pixel(name) > 1 else ())
        kinds += [(name, p, t, b) for p in paddings for t in (False, True) for b in (False, True)]
    for source in ("rgb8", "rgba8", "mono8", "rgb16", "mono16"):
        targets = ("rgba8", "bgra8") if source == "rgba8" else ENCODE_TARGETS
        for target in targets:
            orders = (False, True) if target in _SIXTEEN_BIT else (False,)
            kinds += [("encode", source, target, big) for big in orders]
    return kinds


def check_kind(key: tuple) -> str:
    """Run the self-check of one kind with this process's cv_bridge (no caching): "" when it passes."""
    sel = _selected()
    if sel.bridge is None:
        raise RuntimeError(sel.reason)
    try:
        return _probe(sel.bridge, key)
    except Exception as exc:  # noqa: BLE001
        return _brief(exc)


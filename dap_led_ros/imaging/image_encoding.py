"""Conversion between sensor_msgs/Image fields and numpy arrays, without ROS.

The functions take and return plain fields (encoding, width, height, step, is_bigendian, data),
so they work on rclpy messages, `rosbags` messages and raw buffers alike.

Semantics follow cv_bridge (``toCvCopy(msg, "rgb8")`` and ``CvImage(...).toImageMsg()``):

- 16-bit to 8-bit scales by 255/65535 with rounding (``round(v / 257)``); 8-bit to 16-bit
  multiplies by 257, so 8-bit values survive a round trip through a 16-bit encoding exactly.
- Colour to mono is OpenCV's ``RGB2GRAY`` luma (BT.601 weights), computed before any depth change.
- ROS Bayer names give the 2x2 pattern at the top-left corner (``bayer_rggb8``: R G / G B).
  OpenCV's historical two-letter codes name the second row instead (ROS rggb == OpenCV
  ``BayerBG``); we use OpenCV's four-letter aliases, which follow the ROS reading.
  Demosaicing is OpenCV's bilinear one, as in cv_bridge (edge-aware on request).
- ``yuv422`` is UYVY and ``yuv422_yuy2`` is YUYV, converted with OpenCV (BT.601, video range).
- Rows may be padded (``step`` larger than ``width * bytes_per_pixel``); 16-bit data honours
  ``is_bigendian``.

Decoding yields RGB uint8 for processing plus what an RGB image cannot hold (alpha, the full
16-bit values), so that a node can publish its output in the input's encoding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

# Decoded images larger than this are rejected (a corrupt header must not allocate gigabytes).
DEFAULT_MAX_INPUT_PIXELS = 4096 * 4096  # frames declaring more are refused as malformed (nodes, bags)

# Output encoding policy that keeps the input's encoding family (see output_encoding_for).
SAME_FAMILY = "same_family"

_BAYER_PATTERNS = ("rggb", "bggr", "gbrg", "grbg")
_DEMOSAIC_METHODS = ("bilinear", "edge_aware")


class ImageEncodingError(ValueError):
    """Base class of the errors raised by this module."""


class ImageDecodeError(ImageEncodingError):
    """The Image fields do not describe a valid image we can convert."""


class ImageEncodeError(ImageEncodingError):
    """An array cannot be encoded into the requested encoding."""


@dataclass(frozen=True)
class _Format:
    """Layout of one ROS encoding in memory."""

    channels: int
    bytes_per_channel: int  # 1 or 2
    family: str  # "rgb", "bgr", "rgba", "bgra", "mono", "bayer", "uyvy", "yuyv"
    bayer_pattern: str | None = None

    @property
    def bytes_per_pixel(self) -> int:
        return self.channels * self.bytes_per_channel

    @property
    def is_16bit(self) -> bool:
        return self.bytes_per_channel == 2


_FORMATS: dict[str, _Format] = {
    "rgb8": _Format(3, 1, "rgb"),
    "bgr8": _Format(3, 1, "bgr"),
    "rgba8": _Format(4, 1, "rgba"),
    "bgra8": _Format(4, 1, "bgra"),
    "rgb16": _Format(3, 2, "rgb"),
    "bgr16": _Format(3, 2, "bgr"),
    "mono8": _Format(1, 1, "mono"),
    "mono16": _Format(1, 2, "mono"),
    # Two bytes per pixel, chroma shared by horizontal pixel pairs.
    "yuv422": _Format(2, 1, "uyvy"),
    "yuv422_yuy2": _Format(2, 1, "yuyv"),
}
for _pattern in _BAYER_PATTERNS:
    _FORMATS[f"bayer_{_pattern}8"] = _Format(1, 1, "bayer", _pattern)
    _FORMATS[f"bayer_{_pattern}16"] = _Format(1, 2, "bayer", _pattern)

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_FORMATS)

# ROS pattern name -> OpenCV demosaic code. The four-letter aliases name the top-left 2x2 block
# like ROS does (COLOR_BayerRGGB2RGB == the historical COLOR_BayerBG2RGB).
_DEMOSAIC_CODES: dict[str, dict[str, int]] = {
    "bilinear": {p: getattr(cv2, f"COLOR_Bayer{p.upper()}2RGB") for p in _BAYER_PATTERNS},
    "edge_aware": {p: getattr(cv2, f"COLOR_Bayer{p.upper()}2RGB_EA") for p in _BAYER_PATTERNS},
}
# Where each colour sits in the 2x2 block: (row, col) of R and of B; G fills the other two.
_BAYER_SITES: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "rggb": ((0, 0), (1, 1)),
    "bggr": ((1, 1), (0, 0)),
    "gbrg": ((1, 0), (0, 1)),
    "grbg": ((0, 1), (1, 0)),
}
_TO_RGB = {"rgba": cv2.COLOR_RGBA2RGB, "bgr": cv2.COLOR_BGR2RGB, "bgra": cv2.COLOR_BGRA2RGB}
_FROM_RGB = {"rgba": cv2.COLOR_RGB2RGBA, "bgr": cv2.COLOR_RGB2BGR, "bgra": cv2.COLOR_RGB2BGRA}
_YUV_TO_RGB = {"uyvy": cv2.COLOR_YUV2RGB_UYVY, "yuyv": cv2.COLOR_YUV2RGB_YUY2}
_RGB_TO_YUV = {"uyvy": cv2.COLOR_RGB2YUV_UYVY, "yuyv": cv2.COLOR_RGB2YUV_YUY2}

# Output encoding for each input family under the "same_family" policy, when it is not the
# input encoding itself. Bayer input becomes rgb8: a restored image is full colour, and
# re-mosaicking it would throw two thirds of it away for no consumer's benefit.
_SAME_FAMILY_OVERRIDES = {"bayer": "rgb8"}


@dataclass(frozen=True)
class DecodedImage:
    """An Image message decoded for processing.

    rgb: HxWx3 uint8, C-contiguous. When it could be taken straight from the message buffer
        (rgb8 without row padding) it is a read-only view of that buffer, not a copy.
    encoding: the (normalised) encoding it was decoded from.
    alpha: HxW uint8 alpha channel for rgba8/bgra8, else None.
    full_depth: the 16-bit values at full precision for 16-bit encodings (native byte order):
        HxW for mono16, HxWx3 in RGB order for rgb16/bgr16/bayer_*16; else None.
    """

    rgb: np.ndarray
    encoding: str
    alpha: np.ndarray | None = None
    full_depth: np.ndarray | None = None

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


@dataclass(frozen=True)
class EncodedImage:
    """The fields of a sensor_msgs/Image (apart from the header)."""

    data: bytes
    width: int
    height: int
    step: int
    encoding: str
    is_bigendian: int


# Where an error message sends the reader for the supported encodings (the list is not repeated).
SUPPORTED_LIST_HINT = "supported encodings: docs/ros.md, section Encodings"
_SHOWN_CHARS = 40


def shown(value: Any, limit: int = _SHOWN_CHARS) -> str:
    """An untrusted value for an error message: quoted, control and non-ASCII characters escaped
    (ascii()), at most `limit` characters of it."""
    if isinstance(value, str) and len(value) > limit:
        return f"{ascii(value[:limit])}... ({len(value)} characters)"
    text = ascii(value)
    return text if len(text) <= 2 * limit else text[:2 * limit] + "..."


def normalize_encoding(encoding: Any) -> str:
    """Canonical (lower-case) name of a supported encoding; ImageDecodeError otherwise."""
    if not isinstance(encoding, str):
        raise ImageDecodeError(
            f"image encoding must be a string, got {type(encoding).__name__}")
    name = encoding.strip().lower()
    if name not in _FORMATS:
        raise ImageDecodeError(f"unsupported image encoding {shown(encoding)} ({SUPPORTED_LIST_HINT})")
    return name


def bytes_per_pixel(encoding: str) -> int:
    """Bytes one pixel takes in `encoding` (yuv422 variants: 2, averaged over a pixel pair)."""
    return _FORMATS[normalize_encoding(encoding)].bytes_per_pixel


def output_encoding_for(input_encoding: str, policy: str = SAME_FAMILY) -> str:
    """Encoding to publish a processed image in, given the input's encoding.

    policy "same_family" (default) keeps the input's encoding: rgb8->rgb8, bgr8->bgr8,
    rgba8/bgra8 -> the same (alpha passed through), mono8->mono8, mono16->mono16, rgb16/bgr16 ->
    the same, yuv422/yuv422_yuy2 -> the same; bayer_* -> rgb8 (a restored frame is full colour;
    mosaicking it again would discard two thirds of it). Any other policy must be a supported
    encoding name, which is then used whatever the input.
    """
    source = normalize_encoding(input_encoding)
    if not isinstance(policy, str):
        raise ImageEncodeError(
            f"output encoding policy must be a string, got {type(policy).__name__}")
    if policy.strip().lower() == SAME_FAMILY:
        return _SAME_FAMILY_OVERRIDES.get(_FORMATS[source].family, source)
    try:
        return normalize_encoding(policy)
    except ImageDecodeError:
        raise ImageEncodeError(
            f"unsupported output encoding policy {shown(policy)}; use '{SAME_FAMILY}' or an encoding name "
            f"({SUPPORTED_LIST_HINT})") from None


# ----------------------------------------------------------------------------- decoding

def _bayer_too_small(name: str, width: int, height: int) -> str:
    # OpenCV's demosaicing silently returns black below 3x3.
    return f"{name} needs at least 3x3 pixels to demosaic, got {width}x{height}"


def _as_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ImageDecodeError(f"image {name} must be an integer, got {shown(value)}")
    return int(value)


def _to_8bit(values16: np.ndarray) -> np.ndarray:
    """cv_bridge's 16->8 bit scaling: round(v * 255 / 65535), i.e. round(v / 257)."""
    return cv2.convertScaleAbs(values16, alpha=1.0 / 257.0)


def _to_16bit(values8: np.ndarray) -> np.ndarray:
    """cv_bridge's 8->16 bit scaling: v * 65535 / 255 == v * 257."""
    return values8.astype(np.uint16) * np.uint16(257)


def validate_image_fields(
    encoding: str,
    width: int,
    height: int,
    step: int,
    data: Any,
    *,
    max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS,
    demosaic: str = "bilinear",
) -> tuple[str, int, int, int, np.ndarray]:
    """The checks decode_image makes before it reads a pixel: (normalised encoding, width,
    height, step, the data as a uint8 array viewing the caller's buffer), or ImageDecodeError
    naming the problem. Whatever converts the pixels afterwards (this module or cv_bridge, see
    dap_led_ros/ros/cv_bridge_conversion.py) sees only fields that passed these checks."""
    name = normalize_encoding(encoding)
    fmt = _FORMATS[name]
    width = _as_count("width", width)
    height = _as_count("height", height)
    step = _as_count("step", step)
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"image width and height must be positive, got {width}x{height}")
    if width * height > max_input_pixels:
        raise ImageDecodeError(
            f"image {width}x{height} has {width * height} pixels, "
            f"more than max_input_pixels={max_input_pixels}")
    if fmt.family in ("uyvy", "yuyv") and width % 2:
        raise ImageDecodeError(
            f"{name} needs an even width, got {width} (pixel pairs share chroma)")
    if fmt.family == "bayer" and (width < 3 or height < 3):
        raise ImageDecodeError(_bayer_too_small(name, width, height))
    row_bytes = width * fmt.bytes_per_pixel
    if step < row_bytes:
        raise ImageDecodeError(
            f"step {step} is smaller than width*bytes_per_pixel = {width}*{fmt.bytes_per_pixel} "
            f"= {row_bytes} for {name}")
    if demosaic not in _DEMOSAIC_METHODS:
        raise ImageDecodeError(
            f"unknown demosaic method {shown(demosaic)}; use one of: {', '.join(_DEMOSAIC_METHODS)}")
    try:
        buffer = np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError) as exc:
        raise ImageDecodeError(
            f"image data must be a bytes-like object, got {type(data).__name__} ({exc})") from None
    if buffer.size < step * height:
        raise ImageDecodeError(
            f"image data has {buffer.size} bytes, fewer than step*height = {step}*{height} "
            f"= {step * height}")
    return name, width, height, step, buffer


def decode_image(
    encoding: str,
    width: int,
    height: int,
    step: int,
    is_bigendian: int | bool,
    data: Any,
    *,
    max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS,
    demosaic: str = "bilinear",
) -> DecodedImage:
    """Decode Image fields into RGB uint8 (plus alpha / full-depth values where they exist).

    data is any bytes-like object (bytes, bytearray, memoryview, array.array('B') as rclpy
    uses, numpy uint8 array); it is read through np.frombuffer without copying.
    Raises ImageDecodeError naming the problem for any malformed input.
    """
    name, width, height, step, buffer = validate_image_fields(
        encoding, width, height, step, data, max_input_pixels=max_input_pixels, demosaic=demosaic)
    fmt = _FORMATS[name]
    row_bytes = width * fmt.bytes_per_pixel

    # Zero-copy view of the pixel bytes, row padding (and any trailing bytes) excluded.
    rows = buffer[: step * height].reshape(height, step)[:, :row_bytes]
    if fmt.is_16bit:
        byte_order = ">" if is_bigendian else "<"
        # astype copies into native byte order (swapping bytes when needed).
        samples = rows.view(f"{byte_order}u2").astype(np.uint16)
    else:
        samples = rows
    pixels = samples.reshape(height, width, fmt.channels)
    return _decode_pixels(name, fmt, pixels, demosaic)


def _decode_pixels(name: str, fmt: _Format, pixels: np.ndarray, demosaic: str) -> DecodedImage:
    family = fmt.family
    if family in ("uyvy", "yuyv"):
        rgb = cv2.cvtColor(np.ascontiguousarray(pixels), _YUV_TO_RGB[family])
        return DecodedImage(rgb=rgb, encoding=name)
    if family == "bayer":
        mosaic = np.ascontiguousarray(pixels[:, :, 0])
        demosaiced = cv2.cvtColor(mosaic, _DEMOSAIC_CODES[demosaic][fmt.bayer_pattern])
        if fmt.is_16bit:
            return DecodedImage(rgb=_to_8bit(demosaiced), encoding=name, full_depth=demosaiced)
        return DecodedImage(rgb=demosaiced, encoding=name)

    if family == "mono":
        grey = pixels[:, :, 0]
        if fmt.is_16bit:
            full_depth = np.ascontiguousarray(grey)
            grey = _to_8bit(full_depth)
        else:
            full_depth = None
        rgb = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
        return DecodedImage(rgb=rgb, encoding=name, full_depth=full_depth)

    # OpenCV reads the strided (row-padded) view directly and returns a contiguous copy.
    alpha = cv2.extractChannel(pixels, 3) if family in ("rgba", "bgra") else None
    if family == "rgb":
        colour = np.ascontiguousarray(pixels)  # a copy only when rows are padded
    else:
        colour = cv2.cvtColor(pixels, _TO_RGB[family])

    if fmt.is_16bit:
        return DecodedImage(rgb=_to_8bit(colour), encoding=name, full_depth=colour)
    if np.may_share_memory(colour, pixels):
        # A view of the caller's buffer: make sure processing cannot write into the message.
        colour = colour.view()
        colour.flags.writeable = False
    return DecodedImage(rgb=colour, encoding=name, alpha=alpha)


# ----------------------------------------------------------------------------- encoding

def _check_image(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ImageEncodeError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageEncodeError(f"image dtype must be uint8 or uint16, got {image.dtype}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ImageEncodeError(
            f"image must be HxWx3 (RGB) or HxW (mono), got shape {tuple(image.shape)}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageEncodeError(f"image must not be empty, got shape {tuple(image.shape)}")
    return image


def _set_depth(values: np.ndarray, bytes_per_channel: int) -> np.ndarray:
    if bytes_per_channel == 2:
        return values if values.dtype == np.uint16 else _to_16bit(values)
    return values if values.dtype == np.uint8 else _to_8bit(values)


def _mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample an RGB image through a Bayer colour filter (top-left block named by `pattern`)."""
    (r_row, r_col), (b_row, b_col) = _BAYER_SITES[pattern]
    mosaic = rgb[:, :, 1].copy()  # green everywhere, then the R and B sites
    mosaic[r_row::2, r_col::2] = rgb[r_row::2, r_col::2, 0]
    mosaic[b_row::2, b_col::2] = rgb[b_row::2, b_col::2, 2]
    return mosaic


def encode_image(
    rgb: np.ndarray,
    encoding: str,
    alpha: np.ndarray | None = None,
    bigendian: bool = False,
) -> EncodedImage:
    """Encode an image into Image fields (rows unpadded: step = width * bytes_per_pixel).

    rgb: HxWx3 uint8 RGB (the processing format). Also accepted: HxW grey (mono input kept
        as is), and uint16 values for the 16-bit encodings (e.g. DecodedImage.full_depth to
        pass 16-bit data through at full precision); other depths are scaled like cv_bridge.
    alpha: HxW uint8 for rgba8/bgra8 (None: opaque 255); ignored by encodings without alpha.
    bigendian: byte order of 16-bit encodings; 8-bit encodings always report is_bigendian 0.
    """
    try:
        name = normalize_encoding(encoding)
    except ImageDecodeError as exc:
        raise ImageEncodeError(str(exc)) from None
    fmt = _FORMATS[name]
    image = _check_image(rgb)
    height, width = image.shape[:2]
    family = fmt.family

    if family in ("uyvy", "yuyv"):
        if width % 2:
            raise ImageEncodeError(
                f"{name} needs an even width, got {width} (pixel pairs share chroma)")
        colour = np.ascontiguousarray(_set_depth(image, 1))
        if colour.ndim == 2:
            colour = cv2.cvtColor(colour, cv2.COLOR_GRAY2RGB)
        out = cv2.cvtColor(colour, _RGB_TO_YUV[family])
    elif family == "mono":
        # Colour to grey first, at the input's depth, then the depth change (cv_bridge order).
        if image.ndim == 2:
            grey = image
        else:
            grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        out = _set_depth(grey, fmt.bytes_per_channel)
    else:
        colour = np.ascontiguousarray(_set_depth(image, fmt.bytes_per_channel))
        if colour.ndim == 2:
            colour = cv2.cvtColor(colour, cv2.COLOR_GRAY2RGB)
        if family == "bayer":
            if width < 3 or height < 3:  # what decoding could not read back
                raise ImageEncodeError(_bayer_too_small(name, width, height))
            out = _mosaic(colour, fmt.bayer_pattern)
        elif family == "rgb":
            out = colour
        else:
            out = cv2.cvtColor(colour, _FROM_RGB[family])
            if family in ("rgba", "bgra") and alpha is not None:  # else opaque, from cvtColor
                out[:, :, 3] = _checked_alpha(alpha, height, width)

    if fmt.is_16bit:
        out = out.astype(">u2" if bigendian else "<u2", copy=False)
        is_bigendian = int(bool(bigendian))
    else:
        is_bigendian = 0
    return EncodedImage(
        data=out.tobytes(),  # C order, whatever the strides of `out`
        width=int(width),
        height=int(height),
        step=int(width) * fmt.bytes_per_pixel,
        encoding=name,
        is_bigendian=is_bigendian,
    )


def _checked_alpha(alpha: Any, height: int, width: int) -> np.ndarray:
    valid = (isinstance(alpha, np.ndarray) and alpha.dtype == np.uint8
             and alpha.shape == (height, width))
    if not valid:
        got = (f"{alpha.dtype} {tuple(alpha.shape)}" if isinstance(alpha, np.ndarray)
               else type(alpha).__name__)
        raise ImageEncodeError(f"alpha must be a uint8 array of shape {(height, width)}, got {got}")
    return alpha

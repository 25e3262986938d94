"""Property-based fuzzing of the Image <-> numpy conversion (dap_led_ros.imaging.image_encoding).

For every supported encoding, generated sizes, row padding, byte order and trailing bytes either
round-trip exactly (lossless encodings; 16-bit data at full depth and as cv_bridge's 8-bit
scaling) or, for hostile fields (zero, negative and huge sizes, short and overflowing steps,
truncated data, odd yuv widths, unknown or control-character encodings, non-buffer data), raise
the package's own ImageEncodingError: never another exception, never an allocation sized by a
header that the data cannot back. CI runs a fixed sample; `pytest --long` runs thousands.
"""
from __future__ import annotations

import array
import time
import tracemalloc

import numpy as np
import pytest
from conftest import count_fuzz_case, fuzz_examples, record_figure
from hypothesis import given, settings
from hypothesis import strategies as st

from dap_led_ros.imaging.image_encoding import (
    SUPPORTED_ENCODINGS,
    DecodedImage,
    EncodedImage,
    ImageEncodingError,
    bytes_per_pixel,
    decode_image,
    encode_image,
)

LOSSLESS_8BIT = ("rgb8", "bgr8", "rgba8", "bgra8")
FULL_DEPTH_16 = ("rgb16", "bgr16", "mono16")
YUV = ("yuv422", "yuv422_yuy2")
BAYER = tuple(e for e in SUPPORTED_ENCODINGS if e.startswith("bayer_"))
# Keeps each example cheap; huge sizes come from the malformed-field strategies.
MAX_SIDE = 48

@pytest.fixture(scope="module", autouse=True)
def _timing():
    start = time.monotonic()
    yield
    record_figure("fuzz_conversion_seconds", round(time.monotonic() - start, 1))


def _min_size(encoding: str) -> tuple[int, int]:
    return (3, 3) if encoding in BAYER else (1, 1)


@st.composite
def frames(draw: st.DrawFn, encodings: tuple[str, ...] = SUPPORTED_ENCODINGS):
    """(encoding, array to encode, alpha, bigendian, row padding, trailing bytes, buffer type)."""
    encoding = draw(st.sampled_from(encodings))
    min_h, min_w = _min_size(encoding)
    h = draw(st.integers(min_h, MAX_SIDE))
    w = draw(st.integers(min_w, MAX_SIDE))
    if encoding in YUV:
        w += w % 2
    depth = np.uint16 if encoding.endswith("16") and draw(st.booleans()) else np.uint8
    mono = encoding.startswith("mono") or (encoding in BAYER and draw(st.booleans()))
    shape = (h, w) if mono else (h, w, 3)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    image = rng.integers(0, np.iinfo(depth).max + 1, shape, dtype=depth)
    alpha = rng.integers(0, 256, (h, w), dtype=np.uint8) if encoding in ("rgba8", "bgra8") and draw(
        st.booleans()) else None
    return (encoding, image, alpha, draw(st.booleans()), draw(st.integers(0, 9)), draw(st.integers(0, 17)),
            draw(st.sampled_from(["bytes", "bytearray", "memoryview", "array", "numpy"])))


def _as_buffer(data: bytes, kind: str):
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(data)
    if kind == "array":
        return array.array("B", data)  # what rclpy stores in Image.data
    if kind == "numpy":
        return np.frombuffer(data, np.uint8)
    return data


def _padded(enc: EncodedImage, pad: int, trailing: int) -> tuple[int, bytes]:
    """Rows padded by `pad` bytes of noise, `trailing` bytes after the last row."""
    rows = np.frombuffer(enc.data, np.uint8).reshape(enc.height, enc.step)
    noise = np.full((enc.height, pad), 0xA5, np.uint8)
    return enc.step + pad, np.concatenate([rows, noise], axis=1).tobytes() + b"\x5a" * trailing


def _to_8bit(v16: np.ndarray) -> np.ndarray:
    return np.floor(v16.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)


def _luma(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


@settings(max_examples=fuzz_examples(ci=220, long=3500))
@given(frames())
def test_every_encoding_round_trips_or_keeps_its_documented_conversion(frame) -> None:
    count_fuzz_case("conversion")
    encoding, image, alpha, bigendian, pad, trailing, kind = frame
    enc = encode_image(image, encoding, alpha=alpha, bigendian=bigendian)
    h, w = image.shape[:2]
    assert (enc.height, enc.width, enc.encoding) == (h, w, encoding)
    assert enc.step == w * bytes_per_pixel(encoding) and len(enc.data) == enc.step * h
    assert enc.is_bigendian == (int(bigendian) if encoding.endswith("16") else 0)
    step, data = _padded(enc, pad, trailing)
    out = decode_image(encoding, w, h, step, enc.is_bigendian, _as_buffer(data, kind))
    assert isinstance(out, DecodedImage) and out.rgb.shape == (h, w, 3) and out.rgb.dtype == np.uint8

    if encoding in LOSSLESS_8BIT and image.dtype == np.uint8 and image.ndim == 3:
        assert np.array_equal(out.rgb, image)
        if encoding in ("rgba8", "bgra8"):
            assert np.array_equal(out.alpha, alpha if alpha is not None else np.full((h, w), 255, np.uint8))
    elif encoding in FULL_DEPTH_16:
        # uint16 in: exact at full depth; uint8 in: scaled by 257 (cv_bridge), so exact too; the
        # 8-bit view is round(v / 257).
        full = image.astype(np.uint16) * np.uint16(257) if image.dtype == np.uint8 else image
        assert np.array_equal(out.full_depth, full)
        assert np.array_equal(out.rgb, _to_8bit(full) if full.ndim == 3 else np.repeat(
            _to_8bit(full)[..., None], 3, axis=2))
    elif encoding == "mono8" and image.dtype == np.uint8:
        grey = image if image.ndim == 2 else _luma(image)
        assert np.array_equal(out.rgb, np.repeat(grey[..., None], 3, axis=2))
    # Lossy encodings (yuv chroma sharing, Bayer demosaicing): the conversion is deterministic.
    again = decode_image(encoding, w, h, step, enc.is_bigendian, data)
    assert np.array_equal(again.rgb, out.rgb)


@settings(max_examples=fuzz_examples(ci=60, long=800))
@given(st.sampled_from(BAYER), st.integers(3, MAX_SIDE), st.integers(3, MAX_SIDE), st.booleans(),
       st.integers(0, 2**32 - 1))
def test_bayer_keeps_each_sample_at_its_own_site(encoding, h, w, bigendian, seed) -> None:
    """Bilinear demosaicing keeps the measured colour of every interior pixel (the raw mosaic
    round-trips through decode and a re-mosaic of the same pattern)."""
    count_fuzz_case("conversion")
    wide = encoding.endswith("16")
    raw = np.random.default_rng(seed).integers(0, 65536 if wide else 256, (h, w), dtype=np.uint16 if wide
                                               else np.uint8)
    order = ">u2" if bigendian else "<u2"
    data = raw.astype(order).tobytes() if wide else raw.tobytes()
    out = decode_image(encoding, w, h, w * (2 if wide else 1), int(bigendian), data)
    demosaiced = out.full_depth if wide else out.rgb
    back = encode_image(demosaiced, encoding)
    mosaic = np.frombuffer(back.data, "<u2" if wide else np.uint8).reshape(h, w)
    assert np.array_equal(mosaic[1:-1, 1:-1], raw[1:-1, 1:-1])


_ENCODING_NAMES = st.one_of(
    st.sampled_from(SUPPORTED_ENCODINGS),
    st.sampled_from(SUPPORTED_ENCODINGS).map(str.upper),
    st.sampled_from(SUPPORTED_ENCODINGS).flatmap(
        lambda e: st.sampled_from([e + "\x00", e + "\n", "\x00" + e, e + "\u00e9", e[:-1], e + "x"])),
    st.sampled_from(["8UC3", "32FC1", "16UC1", "jpeg", "nv12", "nv21", "uyvy", "yuyv", "", " "]),
    st.text(max_size=40),
)
_SIZES = st.one_of(st.integers(-3, 64), st.sampled_from([65535, 65536, 2**31 - 1, 2**32 - 1, 2**32, 2**63]))
_DATA = st.one_of(st.binary(max_size=3000), st.integers(0, 3000).map(bytes))


@settings(max_examples=fuzz_examples(ci=300, long=4500))
@given(_ENCODING_NAMES, _SIZES, _SIZES, st.one_of(st.integers(-3, 256), _SIZES),
       st.sampled_from([0, 1, 2, True, False, 255]), _DATA)
def test_malformed_fields_decode_or_raise_the_package_error(encoding, width, height, step, big, data) -> None:
    count_fuzz_case("conversion")
    try:
        out = decode_image(encoding, width, height, step, big, data)
    except ImageEncodingError as exc:
        message = str(exc)
        assert message.isprintable() and len(message) < 300, message
        return
    # Accepted: the data backs every byte of it.
    assert out.rgb.shape == (height, width, 3) and out.rgb.dtype == np.uint8
    assert step * height <= len(data) and width * bytes_per_pixel(encoding) <= step


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
@pytest.mark.parametrize("width, height", [(65535, 65535), (8000, 8000), (65535, 26), (2**31, 1)])
def test_a_lying_header_is_refused_before_anything_is_allocated(encoding, width, height) -> None:
    count_fuzz_case("conversion")
    step = width * bytes_per_pixel(encoding)
    tracemalloc.start()
    try:
        with pytest.raises(ImageEncodingError, match="max_input_pixels|fewer than step|even width"):
            decode_image(encoding, width, height, step, 0, bytes(10))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated for a refused {width}x{height} frame"


_BAD_BUFFERS = [None, 7, 3.5, "abc" * 20, [0] * 12, {"a": 1}, object()]


@settings(max_examples=fuzz_examples(ci=40, long=500))
@given(st.sampled_from(SUPPORTED_ENCODINGS), st.sampled_from(_BAD_BUFFERS),
       st.sampled_from([None, "4", 4.0, True, [4]]))
def test_non_buffer_data_and_non_integer_fields_are_refused(encoding, data, odd_field) -> None:
    count_fuzz_case("conversion")
    with pytest.raises(ImageEncodingError):
        decode_image(encoding, 4, 4, 4 * bytes_per_pixel(encoding), 0, data)
    if odd_field is not None:
        with pytest.raises(ImageEncodingError, match="must be an integer"):
            decode_image(encoding, odd_field, 4, 64, 0, bytes(256))


_DTYPES = [np.uint8, np.uint16, np.int8, np.int32, np.float32, np.float64, np.bool_]


@settings(max_examples=fuzz_examples(ci=120, long=1500))
@given(st.sampled_from(SUPPORTED_ENCODINGS + ("foo", "rgb8\x00")), st.sampled_from(_DTYPES),
       st.lists(st.integers(0, 9), min_size=0, max_size=4), st.booleans(),
       st.one_of(st.none(), st.sampled_from(["good", "wrong shape", "wrong dtype", "not an array"])))
def test_encoding_any_array_gives_a_consistent_message_or_the_package_error(encoding, dtype, shape, bigendian,
                                                                           alpha_kind) -> None:
    count_fuzz_case("conversion")
    image = np.zeros(shape, dtype)
    h = shape[0] if shape else 0
    w = shape[1] if len(shape) > 1 else 0
    alpha = {None: None, "good": np.zeros((h, w), np.uint8), "wrong shape": np.zeros((h + 1, w), np.uint8),
             "wrong dtype": np.zeros((h, w), np.float32), "not an array": [1, 2]}[alpha_kind]
    try:
        enc = encode_image(image, encoding, alpha=alpha, bigendian=bigendian)
    except ImageEncodingError:
        return
    assert image.dtype in (np.uint8, np.uint16) and h > 0 and w > 0
    assert len(enc.data) == enc.step * enc.height and enc.step == enc.width * bytes_per_pixel(encoding)
    back = decode_image(enc.encoding, enc.width, enc.height, enc.step, enc.is_bigendian, enc.data)
    assert back.rgb.shape == (h, w, 3)

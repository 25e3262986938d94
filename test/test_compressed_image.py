"""imaging/compressed_image: CompressedImage pixels as image_transport's compressed plugin writes them."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dap_led_ros.imaging.compressed_image import (
    compress_for_encoding,
    compress_pixels,
    decode_compressed,
    raw_encoding_of,
)
from dap_led_ros.imaging.image_encoding import ImageDecodeError, ImageEncodeError


def smooth(h: int = 24, w: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("encoding, codec, fmt", [
    ("rgb8", "jpeg", "rgb8; jpeg compressed bgr8"),
    ("bgr8", "png", "bgr8; png compressed bgr8"),
    ("rgba8", "jpeg", "rgba8; jpeg compressed bgr8"),
    ("mono8", "jpeg", "mono8; jpeg compressed mono8"),
    ("mono16", "png", "mono16; png compressed mono16"),
    ("mono16", "jpeg", "mono16; jpeg compressed mono8"),
    ("rgb16", "png", "rgb16; png compressed bgr16"),
])
def test_format_strings_as_the_compressed_plugin_writes_them(encoding, codec, fmt):
    out_fmt, data = compress_for_encoding(smooth(), encoding, codec)
    assert out_fmt == fmt
    decoded = decode_compressed(out_fmt, data)
    assert decoded.codec == codec and decoded.encoding == encoding and decoded.raw_encoding == encoding
    assert decoded.grey == encoding.startswith("mono")
    assert decoded.sixteen_bit == (codec == "png" and "16" in encoding)


def test_png_is_lossless_and_keeps_16_bits():
    rgb = smooth()
    fmt, data = compress_for_encoding(rgb, "bgr8", "png")
    np.testing.assert_array_equal(decode_compressed(fmt, data).rgb, rgb)
    img = cv2.imdecode(np.frombuffer(compress_for_encoding(rgb, "rgb16", "png")[1], np.uint8), cv2.IMREAD_UNCHANGED)
    assert img.dtype == np.uint16 and int(img.max()) == int(rgb.max()) * 257


def test_jpeg_is_close_and_follows_the_quality():
    rgb = smooth(96, 128)
    sizes = {}
    for q in (50, 95):
        fmt, data = compress_for_encoding(rgb, "rgb8", "jpeg", jpeg_quality=q)
        sizes[q] = len(data)
        assert np.abs(decode_compressed(fmt, data).rgb.astype(int) - rgb).mean() < 4
    assert sizes[50] < sizes[95]


def test_plain_formats_and_alpha():
    rgb = smooth()
    data = compress_pixels(rgb, "png", alpha=np.full(rgb.shape[:2], 7, np.uint8))
    d = decode_compressed("png", data)  # a driver's plain format: the data tells the rest
    assert d.raw_encoding == "" and d.encoding == "bgra8" and int(d.alpha.max()) == 7
    np.testing.assert_array_equal(d.rgb, rgb)
    assert decode_compressed("jpeg", compress_pixels(rgb, "jpeg", grey=True)).encoding == "mono8"
    assert raw_encoding_of("nonsense; jpeg compressed bgr8") == "" and raw_encoding_of("BGR8; png") == "bgr8"


@pytest.mark.parametrize("fmt, data, message", [
    ("16UC1; compressedDepth png", b"\x89PNG\r\n\x1a\n", "compressed depth map"),
    ("jpeg", b"GIF89a....", "neither JPEG nor PNG (first bytes 47494638)"),
    ("jpeg", b"", "neither JPEG nor PNG (first bytes none)"),
    ("rgb8; jpeg compressed bgr8", b"\xff\xd8\xff\xe0broken", "corrupt jpeg data"),
])
def test_bad_data_is_refused_with_the_reason(fmt, data, message):
    with pytest.raises(ImageDecodeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode_compressed(fmt, data)


def test_too_large_and_unknown_codec_are_refused():
    fmt, data = compress_for_encoding(smooth(), "rgb8", "png")
    with pytest.raises(ImageDecodeError, match="exceeds max_input_pixels=100"):
        decode_compressed(fmt, data, max_input_pixels=100)
    with pytest.raises(ImageEncodeError, match="unknown codec 'webp'"):
        compress_pixels(smooth(), "webp")


@given(st.binary(max_size=256), st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8", "", "\x00;;"]))
def test_any_bytes_decode_or_raise_a_decode_error(data, fmt):
    for prefix in (b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"):
        try:
            d = decode_compressed(fmt, prefix + data)
        except ImageDecodeError:
            continue
        assert d.rgb.dtype == np.uint8 and d.rgb.ndim == 3 and d.rgb.shape[2] == 3


def test_a_header_declaring_a_huge_frame_is_refused_before_decoding(monkeypatch):
    import dap_led_ros.imaging.compressed_image as module

    big_png = compress_pixels(np.zeros((3000, 2000, 3), np.uint8), "png", png_level=9)  # 2000x3000, tiny file
    big_jpeg = compress_pixels(np.zeros((1500, 2500, 3), np.uint8), "jpeg")
    assert module.declared_size("png", big_png) == (2000, 3000)
    assert module.declared_size("jpeg", big_jpeg) == (2500, 1500)
    monkeypatch.setattr(module.cv2, "imdecode", lambda *a: pytest.fail("decoded a frame it had to refuse"))
    for fmt, data, size in (("png", big_png, "2000x3000"), ("jpeg", big_jpeg, "2500x1500")):
        with pytest.raises(ImageDecodeError, match=f"header declares {size}, which exceeds max_input_pixels=1000000"):
            decode_compressed(fmt, data, max_input_pixels=1_000_000)


def test_declared_size_of_odd_headers_is_none_or_true():
    from dap_led_ros.imaging.compressed_image import declared_size

    assert declared_size("png", b"\x89PNG\r\n\x1a\n") is None
    assert declared_size("jpeg", b"\xff\xd8\xff") is None
    assert declared_size("jpeg", b"\xff\xd8\xff\xda\x00\x02") is None  # scan before any frame header
    jpeg = compress_pixels(smooth(24, 32), "jpeg")
    assert declared_size("jpeg", jpeg) == (32, 24)
    assert declared_size("jpeg", jpeg[:40]) in (None, (32, 24))

"""Tests for the ROS-free Image <-> numpy conversion (dap_led_ros.imaging.image_encoding)."""
from __future__ import annotations

import array
import re

import cv2
import numpy as np
import pytest

from dap_led_ros.imaging.image_encoding import (
    SUPPORTED_ENCODINGS,
    DecodedImage,
    EncodedImage,
    ImageDecodeError,
    ImageEncodeError,
    ImageEncodingError,
    bytes_per_pixel,
    decode_image,
    encode_image,
    output_encoding_for,
)

H, W = 24, 32
BAYER_8 = ["bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8"]
BAYER_16 = [name[:-1] + "16" for name in BAYER_8]


def random_rgb(seed: int = 0, height: int = H, width: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def smooth_rgb(height: int = H, width: int = W) -> np.ndarray:
    """Gentle gradients, away from the clipping limits."""
    y, x = np.mgrid[0:height, 0:width]
    ramps = np.stack([40 + 3 * x, 30 + 2 * y + x, 200 - 2 * x - y], axis=-1)
    return ramps.clip(0, 255).astype(np.uint8)


def decode(enc: EncodedImage, **kwargs) -> DecodedImage:
    return decode_image(
        enc.encoding, enc.width, enc.height, enc.step, enc.is_bigendian, enc.data, **kwargs)


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16"])
def test_colour_encodings_round_trip_exactly(encoding):
    rgb = random_rgb()
    enc = encode_image(rgb, encoding)
    assert enc.step == W * bytes_per_pixel(encoding)
    assert len(enc.data) == enc.step * H
    assert isinstance(enc.data, bytes)
    out = decode(enc)
    assert out.encoding == encoding
    assert out.rgb.dtype == np.uint8 and out.rgb.shape == (H, W, 3) and out.rgb.flags.c_contiguous
    np.testing.assert_array_equal(out.rgb, rgb)


@pytest.mark.parametrize("encoding", ["mono8", "mono16"])
def test_mono_round_trips_grey_exactly_and_takes_luma_of_colour(encoding):
    grey = np.random.default_rng(1).integers(0, 256, (H, W), dtype=np.uint8)
    grey_rgb = np.repeat(grey[:, :, None], 3, axis=2)
    out = decode(encode_image(grey_rgb, encoding))
    np.testing.assert_array_equal(out.rgb, grey_rgb)

    colour = random_rgb(2)
    luma = cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY)
    out = decode(encode_image(colour, encoding))
    np.testing.assert_array_equal(out.rgb, np.repeat(luma[:, :, None], 3, axis=2))


@pytest.mark.parametrize("encoding", BAYER_8 + BAYER_16)
def test_bayer_round_trip_on_smooth_image(encoding):
    rgb = smooth_rgb()
    enc = encode_image(rgb, encoding)
    assert enc.step == W * (2 if encoding.endswith("16") else 1)
    out = decode(enc)
    diff = np.abs(out.rgb.astype(int) - rgb)
    assert diff.max() <= 4, diff.max()
    assert diff[2:-2, 2:-2].max() <= 1  # bilinear interpolation is exact on linear ramps inside


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_yuv422_round_trip_on_smooth_image(encoding):
    rgb = smooth_rgb()
    enc = encode_image(rgb, encoding)
    assert enc.step == 2 * W and len(enc.data) == 2 * W * H
    out = decode(enc)
    assert np.abs(out.rgb.astype(int) - rgb).max() <= 3


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
def test_every_supported_encoding_round_trips_a_flat_colour(encoding):
    rgb = np.full((8, 10, 3), (180, 90, 40), dtype=np.uint8)
    out = decode(encode_image(rgb, encoding))
    if encoding.startswith("mono"):
        expected = np.full_like(rgb, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[0, 0])
    else:
        expected = rgb
    assert np.abs(out.rgb.astype(int) - expected).max() <= 2


# ----------------------------------------------------------------------------- byte layouts

def test_byte_layouts_follow_ros_conventions():
    px = np.array([[[10, 20, 30]]], dtype=np.uint8)
    assert encode_image(px, "rgb8").data == bytes([10, 20, 30])
    assert encode_image(px, "bgr8").data == bytes([30, 20, 10])
    assert encode_image(px, "rgba8").data == bytes([10, 20, 30, 255])
    assert encode_image(px, "bgra8", alpha=np.array([[7]], np.uint8)).data == bytes([30, 20, 10, 7])
    # mono16 is value*257, little-endian unless asked otherwise.
    grey = np.array([[[100, 100, 100]]], dtype=np.uint8)
    assert encode_image(grey, "mono16").data == np.array([100 * 257], "<u2").tobytes()
    big = encode_image(grey, "mono16", bigendian=True)
    assert big.data == np.array([100 * 257], ">u2").tobytes() and big.is_bigendian == 1
    assert encode_image(grey, "mono8", bigendian=True).is_bigendian == 0  # no byte order in 8 bit


def test_yuv422_byte_order_uyvy_vs_yuy2():
    white_black = np.array([[[255, 255, 255], [0, 0, 0]]], dtype=np.uint8)
    uyvy = encode_image(white_black, "yuv422").data
    yuyv = encode_image(white_black, "yuv422_yuy2").data
    # BT.601 video range: Y is 235 for white and 16 for black; chroma bytes sit around 128.
    assert (uyvy[1], uyvy[3]) == (235, 16)
    assert (yuyv[0], yuyv[2]) == (235, 16)
    assert abs(uyvy[0] - 128) <= 1 and abs(yuyv[1] - 128) <= 1


def test_rgb8_from_hand_built_bytes():
    data = bytes([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])  # red, green, blue, grey
    out = decode_image("rgb8", 2, 2, 6, 0, data)
    expected = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]]
    np.testing.assert_array_equal(out.rgb.reshape(-1, 3), expected)
    out = decode_image("bgr8", 2, 2, 6, 0, data)
    np.testing.assert_array_equal(out.rgb[0, 0], [0, 0, 255])


# ----------------------------------------------------------------------------- bayer naming

def hand_mosaic(pattern: str, colour: str, height: int = 8, width: int = 8) -> bytes:
    """A mosaic lit (200) only at the sites of `colour`, following the ROS name literally:
    pattern[0] is pixel (0,0), pattern[1] (0,1), pattern[2] (1,0), pattern[3] (1,1)."""
    mosaic = np.zeros((height, width), dtype=np.uint8)
    for index, letter in enumerate(pattern):
        if letter == colour:
            mosaic[index // 2::2, index % 2::2] = 200
    return mosaic.tobytes()


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("demosaic", ["bilinear", "edge_aware"])
def test_bayer_pattern_names_match_ros(pattern, demosaic):
    for colour, channel in (("r", 0), ("g", 1), ("b", 2)):
        data = hand_mosaic(pattern, colour)
        out = decode_image(f"bayer_{pattern}8", 8, 8, 8, 0, data, demosaic=demosaic)
        centre = out.rgb[2:-2, 2:-2].reshape(-1, 3).astype(int)
        others = [c for c in range(3) if c != channel]
        assert (centre[:, channel] >= 190).all(), (colour, centre[:4])
        assert (centre[:, others] <= 10).all(), (colour, centre[:4])


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_mosaic_puts_each_colour_on_its_named_site(pattern):
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 11, 22, 33
    mosaic = np.frombuffer(encode_image(rgb, f"bayer_{pattern}8").data, np.uint8).reshape(4, 4)
    value = {"r": 11, "g": 22, "b": 33}
    for index, letter in enumerate(pattern):
        assert (mosaic[index // 2::2, index % 2::2] == value[letter]).all()


def test_pure_red_mosaicked_as_rggb_decodes_red():
    red = np.zeros((16, 16, 3), dtype=np.uint8)
    red[..., 0] = 220
    out = decode(encode_image(red, "bayer_rggb8"))
    assert out.rgb[..., 0].min() >= 215 and out.rgb[..., 1:].max() <= 5
    # The same bytes read as bggr are blue: the name decides, not the data.
    swapped = decode_image("bayer_bggr8", 16, 16, 16, 0, encode_image(red, "bayer_rggb8").data)
    assert swapped.rgb[2:-2, 2:-2, 2].min() >= 215 and swapped.rgb[2:-2, 2:-2, :2].max() <= 5


# ----------------------------------------------------------------------------- padding / endianness

def test_padded_rgb8_rows_decode_to_the_right_pixels():
    rgb = random_rgb(3, 5, 7)
    step = 7 * 3 + 5
    rows = np.full((5, step), 0xEE, dtype=np.uint8)  # padding filled with junk
    rows[:, : 7 * 3] = rgb.reshape(5, -1)
    out = decode_image("rgb8", 7, 5, step, 0, rows.tobytes())
    np.testing.assert_array_equal(out.rgb, rgb)


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
def test_every_encoding_decodes_padded_rows_like_unpadded_ones(encoding):
    rgb = random_rgb(11, 6, 8)
    enc = encode_image(rgb, encoding, alpha=np.full((6, 8), 77, np.uint8))
    step = enc.step + 6
    rows = np.full((6, step), 0x5A, dtype=np.uint8)
    rows[:, : enc.step] = np.frombuffer(enc.data, np.uint8).reshape(6, enc.step)
    padded = decode_image(encoding, 8, 6, step, enc.is_bigendian, rows.tobytes())
    plain = decode(enc)
    np.testing.assert_array_equal(padded.rgb, plain.rgb)
    for name in ("alpha", "full_depth"):
        if getattr(plain, name) is None:
            assert getattr(padded, name) is None
        else:
            np.testing.assert_array_equal(getattr(padded, name), getattr(plain, name))


@pytest.mark.parametrize("bigendian", [False, True])
def test_padded_mono16_with_odd_step(bigendian):
    values = np.random.default_rng(4).integers(0, 65536, (4, 5), dtype=np.uint16)
    order = ">u2" if bigendian else "<u2"
    step = 5 * 2 + 3  # odd: the 16-bit samples are unaligned in every other row
    raw = bytearray()
    for row in values:
        raw += row.astype(order).tobytes() + b"\xab" * 3
    out = decode_image("mono16", 5, 4, step, int(bigendian), bytes(raw))
    np.testing.assert_array_equal(out.full_depth, values)
    assert out.full_depth.dtype == np.uint16 and out.full_depth.dtype.isnative


def test_big_endian_mono16_decodes_correctly():
    values = np.array([[0, 128, 129, 385], [32896, 40000, 65407, 65535]], dtype=np.uint16)
    data = values.astype(">u2").tobytes()
    out = decode_image("mono16", 4, 2, 8, 1, data)
    np.testing.assert_array_equal(out.full_depth, values)
    # cv_bridge's 16->8 bit scaling: round(v * 255 / 65535).
    expected8 = np.round(values.astype(float) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(out.rgb, np.repeat(expected8[:, :, None], 3, axis=2))
    # Read with the wrong byte order, the values come out swapped.
    wrong = decode_image("mono16", 4, 2, 8, 0, data)
    np.testing.assert_array_equal(wrong.full_depth, values.byteswap())


def test_big_endian_rgb16_and_bgr16():
    values = np.random.default_rng(5).integers(0, 65536, (3, 4, 3), dtype=np.uint16)
    out = decode_image("rgb16", 4, 3, 24, True, values.astype(">u2").tobytes())
    np.testing.assert_array_equal(out.full_depth, values)
    out = decode_image("bgr16", 4, 3, 24, True, values[..., ::-1].astype(">u2").tobytes())
    np.testing.assert_array_equal(out.full_depth, values)  # full_depth is in RGB order


# ----------------------------------------------------------------------------- passthrough data

@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_full_depth_passes_through_unchanged(bigendian):
    values = np.random.default_rng(6).integers(0, 65536, (H, W), dtype=np.uint16)
    order = ">u2" if bigendian else "<u2"
    data = values.astype(order).tobytes()
    decoded = decode_image("mono16", W, H, 2 * W, bigendian, data)
    again = encode_image(decoded.full_depth, "mono16", bigendian=bigendian)
    assert again.data == data and again.is_bigendian == int(bigendian)


@pytest.mark.parametrize("encoding", ["rgba8", "bgra8"])
def test_alpha_is_kept_and_passed_back(encoding):
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    data = pixels.tobytes()
    decoded = decode_image(encoding, W, H, 4 * W, 0, data)
    np.testing.assert_array_equal(decoded.alpha, pixels[..., 3])
    assert encode_image(decoded.rgb, encoding, alpha=decoded.alpha).data == data
    # No alpha given: opaque.
    opaque = np.frombuffer(encode_image(decoded.rgb, encoding).data, np.uint8).reshape(H, W, 4)
    assert (opaque[..., 3] == 255).all()


def test_rgb8_decode_is_a_read_only_view_of_the_buffer():
    rgb = random_rgb(8)
    buffer = array.array("B", rgb.tobytes())  # what rclpy puts in msg.data
    out = decode_image("rgb8", W, H, 3 * W, 0, buffer)
    assert np.shares_memory(out.rgb, np.frombuffer(buffer, np.uint8))
    assert not out.rgb.flags.writeable
    np.testing.assert_array_equal(out.rgb, rgb)


@pytest.mark.parametrize(
    "wrap", [bytes, bytearray, memoryview, lambda b: np.frombuffer(b, np.uint8)])
def test_accepts_any_bytes_like_data(wrap):
    rgb = random_rgb(9)
    out = decode_image("bgr8", W, H, 3 * W, 0, wrap(rgb[..., ::-1].tobytes()))
    np.testing.assert_array_equal(out.rgb, rgb)


def test_trailing_bytes_and_case_are_tolerated():
    rgb = random_rgb(10)
    out = decode_image("RGB8", W, H, 3 * W, 0, rgb.tobytes() + b"\x00" * 7)
    assert out.encoding == "rgb8"
    np.testing.assert_array_equal(out.rgb, rgb)


def test_decode_mono16_to_rgb8_rounds_like_cv_bridge():
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)  # every 16-bit value
    out = decode_image("mono16", 256, 256, 512, 0, values.tobytes())
    expected = np.round(values.astype(float) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(out.rgb[..., 0], expected)


# ----------------------------------------------------------------------------- malformed input

def good_fields(**overrides):
    fields = dict(encoding="rgb8", width=4, height=3, step=12, is_bigendian=0, data=bytes(36))
    fields.update(overrides)
    return fields


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (dict(encoding="8UC3"), "unsupported image encoding '8UC3'"),
        (dict(encoding="jpeg"), "(supported encodings: docs/ros.md, section Encodings)"),
        (dict(encoding=None), "encoding must be a string"),
        (dict(width=0), "width and height must be positive, got 0x3"),
        (dict(height=0), "width and height must be positive, got 4x0"),
        (dict(width=-4), "must be positive"),
        (dict(width=4.0), "width must be an integer"),
        (dict(step=11), "step 11 is smaller than width*bytes_per_pixel = 4*3 = 12 for rgb8"),
        (dict(encoding="mono16", step=7), "4*2 = 8 for mono16"),
        (dict(data=bytes(35)), "35 bytes, fewer than step*height = 12*3 = 36"),
        (dict(step=16, data=bytes(40)), "40 bytes, fewer than step*height = 16*3 = 48"),
        (dict(data="not bytes"), "bytes-like"),
        (dict(encoding="yuv422", width=5, step=10, data=bytes(30)), "yuv422 needs an even width"),
        (dict(encoding="yuv422_yuy2", width=3, step=6), "even width, got 3"),
        (dict(encoding="bayer_rggb8", width=2, step=2, height=8, data=bytes(16)), "at least 3x3"),
    ],
)
def test_malformed_fields_raise_specific_errors(overrides, fragment):
    with pytest.raises(ImageDecodeError, match=re.escape(fragment)):
        decode_image(**good_fields(**overrides))


def test_absurd_size_is_rejected_before_touching_data():
    with pytest.raises(ImageDecodeError,
                       match="100000x100000 has 10000000000 pixels, more than max_input_pixels"):
        decode_image("rgb8", 100000, 100000, 300000, 0, b"")
    with pytest.raises(ImageDecodeError, match="max_input_pixels=100"):
        decode_image(**good_fields(width=20, height=10, step=60, data=bytes(600)), max_input_pixels=100)
    assert decode_image(**good_fields(), max_input_pixels=12).rgb.shape == (3, 4, 3)


def test_decode_error_is_a_value_error():
    with pytest.raises(ValueError):
        decode_image(**good_fields(width=0))


def test_unknown_demosaic_method():
    with pytest.raises(ImageDecodeError, match="unknown demosaic method 'vng'"):
        decode_image("bayer_rggb8", 4, 4, 4, 0, bytes(16), demosaic="vng")


@pytest.mark.parametrize(
    "image, encoding, kwargs, fragment",
    [
        (np.zeros((4, 4, 3), np.uint8), "h264", {}, "unsupported image encoding 'h264'"),
        (np.zeros((4, 4, 3), np.float32), "rgb8", {}, "dtype must be uint8 or uint16, got float32"),
        (np.zeros((4, 4, 4), np.uint8), "rgb8", {}, "got shape (4, 4, 4)"),
        (np.zeros((0, 4, 3), np.uint8), "rgb8", {}, "must not be empty"),
        ([[1, 2, 3]], "rgb8", {}, "must be a numpy array, got list"),
        (np.zeros((4, 5, 3), np.uint8), "yuv422", {}, "even width, got 5"),
        (np.zeros((4, 4, 3), np.uint8), "rgba8", {"alpha": np.zeros((4, 5), np.uint8)},
         "alpha must be a uint8 array of shape (4, 4)"),
    ],
)
def test_encode_errors(image, encoding, kwargs, fragment):
    with pytest.raises(ImageEncodeError, match=re.escape(fragment)):
        encode_image(image, encoding, **kwargs)


def test_encode_scales_between_depths_like_cv_bridge():
    values = np.array([[0, 255, 256, 32896, 65535]], dtype=np.uint16)
    rgb16 = np.repeat(values[:, :, None], 3, axis=2)
    out = np.frombuffer(encode_image(rgb16, "rgb8").data, np.uint8)
    np.testing.assert_array_equal(out[::3], np.round(values[0] / 257))
    mono = np.array([[3, 200]], dtype=np.uint8)
    out16 = np.frombuffer(encode_image(mono, "mono16").data, "<u2")
    np.testing.assert_array_equal(out16, [3 * 257, 200 * 257])


# ----------------------------------------------------------------------------- output policy

@pytest.mark.parametrize(
    "source, expected",
    [
        ("rgb8", "rgb8"), ("bgr8", "bgr8"), ("rgba8", "rgba8"), ("bgra8", "bgra8"),
        ("mono8", "mono8"), ("mono16", "mono16"), ("rgb16", "rgb16"), ("bgr16", "bgr16"),
        ("yuv422", "yuv422"), ("yuv422_yuy2", "yuv422_yuy2"),
        ("bayer_rggb8", "rgb8"), ("bayer_gbrg16", "rgb8"),
    ],
)
def test_output_encoding_same_family(source, expected):
    assert output_encoding_for(source) == expected


def test_output_encoding_explicit_and_invalid():
    assert output_encoding_for("bayer_rggb8", "bgr8") == "bgr8"
    assert output_encoding_for("mono16", "Mono8") == "mono8"
    with pytest.raises(ImageEncodeError,
                       match="unsupported output encoding policy 'jpeg'; use 'same_family'"):
        output_encoding_for("rgb8", "jpeg")
    with pytest.raises(ImageDecodeError, match="unsupported image encoding 'xyz'"):
        output_encoding_for("xyz")


# ----------------------------------------------------------------------------- hostile encodings

@pytest.mark.parametrize("encoding, escaped", [
    ("rgb8\x00", r"'rgb8\x00'"),
    ("rgb8\n[INFO] [enhance_node]: forged", r"'rgb8\n[INFO]"),
    ("rgb8\x1b[2J", r"'rgb8\x1b[2J'"),
    ("rgb8\u00e9", r"'rgb8\xe9'"),
    ("\u202erbg8", r"'\u202erbg8'"),
])
def test_encoding_with_control_or_non_ascii_characters_is_refused_with_an_escaped_name(encoding, escaped):
    with pytest.raises(ImageEncodingError) as info:
        decode_image(**good_fields(encoding=encoding))
    message = str(info.value)
    assert message.startswith("unsupported image encoding ") and escaped in message
    assert message.isascii() and message.isprintable()
    with pytest.raises(ImageEncodingError):
        encode_image(random_rgb(), encoding)


def test_unknown_encoding_message_is_short_and_does_not_repeat_the_supported_list():
    message = str(pytest.raises(ImageDecodeError, decode_image, **good_fields(encoding="foo")).value)
    assert message == "unsupported image encoding 'foo' (supported encodings: docs/ros.md, section Encodings)"
    huge = str(pytest.raises(ImageDecodeError, decode_image, **good_fields(encoding="x" * 200_000)).value)
    assert len(huge) < 200 and "200000 characters" in huge
    policy = str(pytest.raises(ImageEncodeError, output_encoding_for, "rgb8", "y\n" * 1000).value)
    assert len(policy) < 250 and "\n" not in policy and "bgr8, rgba8" not in policy


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
@pytest.mark.parametrize("width, height", [(1, 1), (1, 6), (3, 2), (641, 480)])
def test_yuv422_of_odd_width_is_refused_naming_the_rule(encoding, width, height):
    step = width * 2
    with pytest.raises(ImageEncodingError, match=f"{encoding} needs an even width, got {width}"):
        decode_image(encoding, width, height, step, 0, bytes(step * height))
    with pytest.raises(ImageEncodingError, match="needs an even width"):
        encode_image(random_rgb(height=height, width=width), encoding)


@pytest.mark.parametrize("encoding", BAYER_8 + BAYER_16)
@pytest.mark.parametrize("height, width", [(3, 3), (5, 7), (3, 4)])
def test_bayer_of_odd_size_demosaics_a_flat_colour_exactly(encoding, height, width):
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[...] = (200, 100, 50)
    assert np.array_equal(decode(encode_image(rgb, encoding)).rgb, rgb)


@pytest.mark.parametrize("encoding", ["bayer_rggb8", "bayer_bggr16"])
@pytest.mark.parametrize("height, width", [(1, 1), (2, 5), (5, 2)])
def test_bayer_below_3x3_is_refused_when_encoding_as_when_decoding(encoding, height, width):
    """Found by test_fuzz_conversion.py: a 1x1 frame was encoded into a Bayer message that
    decoding then refused."""
    with pytest.raises(ImageEncodeError, match="needs at least 3x3 pixels"):
        encode_image(np.zeros((height, width, 3), np.uint8), encoding)

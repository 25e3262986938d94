"""Parity of the package's Image conversion with cv_bridge, from cv_bridge's own sources and tests.

Source: github.com/ros-perception/vision_opencv, branch `rolling` at 8b42d66 (2024-02-17); Humble's
branch (066793a) has the same conversion code (cv_bridge.cpp differs there only in its include
names and cvtColorForDisplay). Line numbers below refer to rolling's files:

  CPP   cv_bridge/src/cv_bridge.cpp            getCvType, getEncoding, getConversionCodes, matFromImage,
                                               toCvCopyImpl, toImageMsg
  PY    cv_bridge/python/cv_bridge/core.py     CvBridge.imgmsg_to_cv2, cv2_to_imgmsg
  UTEST cv_bridge/test/utest.cpp, UTEST2 cv_bridge/test/utest2.cpp, ENDIAN cv_bridge/test/test_endian.cpp,
  CONV  cv_bridge/test/conversions.py, ENUM cv_bridge/test/enumerants.py, BIND cv_bridge/test/python_bindings.py

No code is taken from vision_opencv: the facts (which OpenCV code converts which pair of encodings,
in which order the depth changes, what is refused) and the expected values are, each cited.

Part 1 runs everywhere: the vectors against the package's own conversion (image_encoding via
msg_conversion with conversion="own"). Where our semantics differ on purpose, the test says so and
checks the documented mapping instead. The main difference: cv_bridge returns what is asked for
(`desired_encoding`), the package always decodes to RGB uint8 for the network (plus the alpha
channel and the 16-bit values beside it), and encodes from RGB (cvtColor + toImageMsg; cv_bridge's
cv2_to_imgmsg only labels an array).
Part 2 runs where a working cv_bridge imports (a ROS install): both paths on the same messages.
Part 3 runs everywhere: how the path is chosen, with stand-in modules.
"""
from __future__ import annotations

import array
import sys
import types

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import Image

from dap_led_ros.imaging.image_encoding import (
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    ImageEncodeError,
    bytes_per_pixel,
    output_encoding_for,
)
from dap_led_ros.ros import cv_bridge_conversion as cvb
from dap_led_ros.ros.msg_conversion import image_msg_to_decoded, make_image_msg

BAYER = ("rggb", "bggr", "gbrg", "grbg")


def own_decode(msg: Image, **kwargs):
    return image_msg_to_decoded(msg, conversion="own", **kwargs)


def own_encode(image, encoding, **kwargs) -> Image:
    return make_image_msg(image, None, encoding, conversion="own", **kwargs)


def message(encoding: str, width: int, height: int, data: bytes, step: int | None = None,
            is_bigendian: int = 0) -> Image:
    return Image(height=height, width=width, encoding=encoding, is_bigendian=is_bigendian,
                 step=width * bytes_per_pixel(encoding) if step is None else step, data=array.array("B", data))


def random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


# ----------------------------------------------------------------------------- cv_bridge's rules (facts)

# CPP:75-101 getCvType: encoding -> (channels, bytes per channel).
CV_TYPE = {
    "bgr8": (3, 1), "mono8": (1, 1), "rgb8": (3, 1), "mono16": (1, 2), "bgr16": (3, 2), "rgb16": (3, 2),
    "bgra8": (4, 1), "rgba8": (4, 1), "bgra16": (4, 2), "rgba16": (4, 2),
    **{f"bayer_{p}8": (1, 1) for p in BAYER}, **{f"bayer_{p}16": (1, 2) for p in BAYER},
    "yuv422": (2, 1), "yuv422_yuy2": (2, 1),
}


# CPP:126-143 getEncoding: the colour family of an encoding (8 and 16 bits alike).
def family(encoding: str) -> str:
    if encoding.startswith("bayer_"):
        return encoding.rstrip("0123456789")  # bayer_rggb8 / bayer_rggb16 -> bayer_rggb
    return {"mono8": "GRAY", "mono16": "GRAY", "yuv422": "YUV422", "yuv422_yuy2": "YUV422_YUY2"}.get(
        encoding, encoding.rstrip("0123456789").upper())


SAME = None  # CPP:145 SAME_FORMAT: a depth change only
# CPP:151-213 getConversionCodes, as (source family, target family) -> OpenCV code name, line.
CODES: dict[tuple[str, str], tuple[str | None, int]] = {
    **{(f, f): (SAME, 155) for f in ("GRAY", "RGB", "BGR", "RGBA", "BGRA", "YUV422")},
    ("GRAY", "RGB"): ("COLOR_GRAY2RGB", 158), ("GRAY", "BGR"): ("COLOR_GRAY2BGR", 159),
    ("GRAY", "RGBA"): ("COLOR_GRAY2RGBA", 160), ("GRAY", "BGRA"): ("COLOR_GRAY2BGRA", 161),
    ("RGB", "GRAY"): ("COLOR_RGB2GRAY", 163), ("RGB", "BGR"): ("COLOR_RGB2BGR", 164),
    ("RGB", "RGBA"): ("COLOR_RGB2RGBA", 165), ("RGB", "BGRA"): ("COLOR_RGB2BGRA", 166),
    ("BGR", "RGB"): ("COLOR_BGR2RGB", 169),
    ("RGBA", "RGB"): ("COLOR_RGBA2RGB", 174), ("RGBA", "BGRA"): ("COLOR_RGBA2BGRA", 176),
    ("BGRA", "RGB"): ("COLOR_BGRA2RGB", 179),
    ("YUV422", "RGB"): ("COLOR_YUV2RGB_UYVY", 184),
    ("YUV422_YUY2", "RGB"): ("COLOR_YUV2RGB_YUY2", 190),
    # ROS names the top-left 2x2 block, OpenCV's old codes the second row: ROS rggb == OpenCV BayerBG.
    ("bayer_rggb", "RGB"): ("COLOR_BayerBG2RGB", 197), ("bayer_bggr", "RGB"): ("COLOR_BayerRG2RGB", 201),
    ("bayer_gbrg", "RGB"): ("COLOR_BayerGR2RGB", 205), ("bayer_grbg", "RGB"): ("COLOR_BayerGB2RGB", 209),
}


def depth(encoding: str) -> int:
    return 16 if encoding.endswith("16") else 8


def cv_bridge_convert(image: np.ndarray, source: str, target: str) -> np.ndarray:
    """What cv_bridge's toCvCopyImpl (CPP:331-378) makes of `image` in `source` asked for `target`:
    the family's OpenCV code (CPP:255-261), then, when depths and families differ, the depth
    change (CPP:263-269); 8->16 scales by 65535/255, 16->8 by 255/65535 with rounding (CPP:359-366)."""
    if source == target:  # CPP:342-344 a copy
        return image.copy()
    code, _ = CODES[(family(source), family(target))]  # KeyError: "Unsupported conversion" (CPP:258-260)
    steps = [code] + ([SAME] if depth(source) != depth(target) and family(source) != family(target) else [])
    for step in steps:
        if step is SAME:
            if depth(target) == 16 and image.dtype == np.uint8:
                image = image.astype(np.uint16) * np.uint16(257)  # 65535/255 == 257 exactly
            elif depth(target) == 8 and image.dtype == np.uint16:
                image = np.rint(image.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
        else:
            image = cv2.cvtColor(image, getattr(cv2, step))
    return image


def raw_pixels(msg: Image) -> np.ndarray:
    """The message's pixels as CPP:299-300 / matFromImage reads them (step honoured, native order)."""
    channels, size = CV_TYPE[msg.encoding]
    rows = np.frombuffer(msg.data, np.uint8)[: msg.step * msg.height].reshape(msg.height, msg.step)
    rows = rows[:, : msg.width * channels * size]
    if size == 2:
        rows = rows.view(">u2" if msg.is_bigendian else "<u2").astype(np.uint16)
    pixels = rows.reshape(msg.height, msg.width, channels)
    return pixels[:, :, 0] if channels == 1 else pixels


# ============================================================================= Part 1: vectors

@pytest.mark.parametrize("encoding", sorted(CV_TYPE))
def test_layout_of_each_encoding_is_cv_bridges(encoding):
    """CPP:75-101 getCvType: channels and depth of every named encoding. rgba16/bgra16 are the
    difference: cv_bridge converts them, the package does not take them (refused, named)."""
    channels, size = CV_TYPE[encoding]
    if encoding in ("rgba16", "bgra16"):
        with pytest.raises(ImageDecodeError, match="unsupported image encoding"):
            own_decode(message(encoding, 2, 2, bytes(2 * 2 * 8), step=16))
        return
    assert bytes_per_pixel(encoding) == channels * size


def test_every_supported_encoding_is_in_cv_bridges_table():
    assert set(SUPPORTED_ENCODINGS) <= set(CV_TYPE)


@pytest.mark.parametrize("encoding, source", [
    ("8UC3", "CONV:10 passthrough 8UC3 -> mono16 raises"),
    ("8UC1", "ENUM:32 getCvType('8UC1')"),
    ("8U", "ENUM:33 getCvType('8U')"),
    ("16UC1", "CPP:106-110 generic type"),
    ("32FC1", "UTEST:116-124"),
    ("32FC10", "UTEST:126-134"),
    ("64FC1", "CPP:106-110 generic type"),
])
def test_encodings_without_colour_are_refused_as_cv_bridge_refuses_them_as_rgb(encoding, source):
    """cv_bridge reads generic types (CPP:104-116) but will not turn one into a colour encoding:
    "[8UC3] is not a color format. but [rgb8] is" (CPP:228-232; UTEST2:106-110 expects the throw).
    The package only ever wants RGB, so it refuses them up front, naming the encoding."""
    with pytest.raises(ImageDecodeError, match=f"unsupported image encoding '{encoding}'"):
        own_decode(_generic(encoding))


def _generic(encoding: str) -> Image:
    msg = message("rgb8", 4, 2, bytes(4 * 2 * 80))
    msg.encoding = encoding
    return msg


def _decode_expectation(msg: Image) -> tuple[np.ndarray, np.ndarray | None]:
    """cv_bridge's toCvCopy(msg, "rgb8") and, for 16-bit encodings, toCvCopy(msg, "rgb16"/"mono16")."""
    raw = raw_pixels(msg)
    name = msg.encoding
    full = None
    if depth(name) == 16:
        full = raw if name == "mono16" else cv_bridge_convert(raw, name, "rgb16")
    return cv_bridge_convert(raw, name, "rgb8"), full


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
def test_decoding_to_rgb_uses_cv_bridges_code_and_depth_order(encoding):
    """CPP:151-213 the OpenCV code from each encoding to RGB (Bayer by ROS's top-left naming, yuv422
    as UYVY, yuv422_yuy2 as YUYV), then for 16 bits the depth change 255/65535 with rounding
    (CPP:263-269, 362-363); 16-bit values beside it as toCvCopy(msg, "rgb16") gives them."""
    h, w = 9, 14
    msg = message(encoding, w, h, random_bytes(h * w * bytes_per_pixel(encoding), seed=len(encoding)))
    decoded = own_decode(msg)
    rgb, full = _decode_expectation(msg)
    np.testing.assert_array_equal(decoded.rgb, rgb)
    if full is None:
        assert decoded.full_depth is None
    else:
        np.testing.assert_array_equal(decoded.full_depth, full)
    if encoding in ("rgba8", "bgra8"):  # the package keeps what RGB cannot hold (cv_bridge: passthrough)
        np.testing.assert_array_equal(decoded.alpha, raw_pixels(msg)[:, :, 3])


ENCODE_SOURCES = {"rgb8": (3, np.uint8), "mono8": (1, np.uint8), "rgb16": (3, np.uint16), "mono16": (1, np.uint16)}
ENCODE_TARGETS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "rgb16", "bgr16", "mono16")


@pytest.mark.parametrize("target", ENCODE_TARGETS)
@pytest.mark.parametrize("source", ENCODE_SOURCES)
def test_encoding_is_cv_bridges_cvtcolor_then_toimagemsg(source, target):
    """cvtColor(CvImage(image, source), target).toImageMsg(): the codes from RGB and GRAY
    (CPP:158-166), colour first and depth after (CPP:263-269: rgb16 -> mono8 takes the luma at 16
    bits), 8->16 by 65535/255 (CPP:360-361); step = cols * elemSize, is_bigendian = native
    (CPP:392-396)."""
    channels, dtype = ENCODE_SOURCES[source]
    shape = (7, 10, 3) if channels == 3 else (7, 10)
    image = np.random.default_rng(3).integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    msg = own_encode(image, target)
    want = cv_bridge_convert(image, source, target)
    assert (msg.encoding, msg.height, msg.width) == (target, 7, 10)
    assert msg.step == 10 * want.dtype.itemsize * (want.shape[2] if want.ndim == 3 else 1)
    assert msg.is_bigendian == (sys.byteorder == "big")
    assert bytes(msg.data) == want.astype(want.dtype.newbyteorder("=")).tobytes()


def test_depth_change_comes_after_the_luma_as_in_cv_bridge():
    """CPP:263-269: rgb16 -> mono8 is RGB2GRAY at 16 bits, then 255/65535. Scaling each channel to
    8 bits first would give other values: these pixels tell the two orders apart."""
    rng = np.random.default_rng(11)
    image = rng.integers(0, 65536, (16, 16, 3), dtype=np.uint16)
    got = np.frombuffer(bytes(own_encode(image, "mono8").data), np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(got, cv_bridge_convert(image, "rgb16", "mono8"))
    other_order = cv2.cvtColor(np.rint(image * (255 / 65535)).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    assert (got != other_order).any()


@pytest.mark.parametrize("target", ["yuv422", "yuv422_yuy2", "bayer_rggb8", "bayer_grbg16"])
def test_outputs_cv_bridge_does_not_make_follow_the_documented_mapping(target):
    """cv_bridge has no code from RGB to yuv422 or Bayer (CPP:151-213; "Unsupported conversion",
    CPP:258-260; UTEST2:130-135 expects the throw). Intentional difference: the package publishes
    a yuv422 camera's output as yuv422 (same_family) and can write Bayer on request; by default a
    Bayer input comes out as rgb8 (docs/ros.md, Encodings). A flat colour survives either."""
    with pytest.raises(KeyError):
        cv_bridge_convert(np.zeros((4, 4, 3), np.uint8), "rgb8", target)
    expected_out = "rgb8" if target.startswith("bayer_") else target
    assert output_encoding_for(target) == expected_out
    flat = np.full((6, 8, 3), (90, 140, 200), np.uint8)
    decoded = own_decode(own_encode(flat, target))
    assert np.abs(decoded.rgb.astype(int) - flat).max() <= 2


def test_mono16_1000_reads_as_4_in_every_channel():
    """UTEST:23-45 ChannelOrder: mono16 200x200 of 1000 -> bgr8, every value 1000 * 255/65535 -> 4."""
    msg = message("mono16", 200, 200, np.full((200, 200), 1000, "<u2").tobytes())
    decoded = own_decode(msg)
    assert decoded.rgb.shape == (200, 200, 3) and (decoded.rgb == 4).all()
    assert (decoded.full_depth == 1000).all()


def test_a_non_contiguous_mono16_slice_makes_an_unpadded_message():
    """UTEST:7-21 NonContinuous: eye(8,8) 16UC1, colRange(2,5) -> mono16 8x3, step 6."""
    eye = np.eye(8, dtype=np.uint16)
    msg = own_encode(eye[:, 2:5], "mono16")
    assert (msg.height, msg.width, msg.step, msg.encoding) == (8, 3, 6, "mono16")
    assert bytes(msg.data) == np.ascontiguousarray(eye[:, 2:5]).astype("<u2").tobytes()


def test_a_message_without_step_or_data_is_refused_and_a_well_formed_one_converts():
    """UTEST:47-62 initialization: bgr8 200x200 with neither step nor data throws (it used to
    segfault); UTEST:64-70: rgb8 200x200, step 600, data sized to match, converts."""
    empty = Image(encoding="bgr8", height=200, width=200)
    with pytest.raises(ImageDecodeError, match="step 0 is smaller than"):
        own_decode(empty)
    ok = message("rgb8", 200, 200, bytes(200 * 600), step=600)
    assert own_decode(ok).rgb.shape == (200, 200, 3)


@pytest.mark.parametrize("step, accepted", [(208, True), (199, False), (200, True)])
def test_mono8_step_rules(step, accepted):
    """UTEST:73-106 imageMessageStep: mono8 220x200; step 208 (padded) converts to 220x200 with the
    padding dropped, 199 throws, 200 converts. CPP:283-289: step < width * bytes per pixel throws."""
    data = random_bytes(220 * max(step, 200), seed=step)
    msg = message("mono8", 200, 220, data, step=step)
    if not accepted:
        with pytest.raises(ImageDecodeError, match="step 199 is smaller than width"):
            own_decode(msg)
        return
    decoded = own_decode(msg)
    assert decoded.rgb.shape == (220, 200, 3) and decoded.rgb.flags.c_contiguous
    rows = np.frombuffer(data, np.uint8).reshape(220, step)[:, :200]
    np.testing.assert_array_equal(decoded.rgb[:, :, 0], rows)


def test_short_data_is_refused_longer_data_is_read_like_cv_bridges_python_layer():
    """CPP:291-296 throws unless height * step == data size. Shorter data: refused, as there.
    Longer data: the package reads the first height * step bytes, as cv_bridge's Python layer does
    (PY:173-182 builds the array on the message's buffer; numpy accepts a longer one). Difference
    from the C++ check, on purpose: trailing bytes hurt no one."""
    data = random_bytes(6 * 4 * 3 + 5)
    with pytest.raises(ImageDecodeError, match="fewer than step"):
        own_decode(message("rgb8", 6, 4, data[: 6 * 4 * 3 - 1]))
    decoded = own_decode(message("rgb8", 6, 4, data))
    np.testing.assert_array_equal(decoded.rgb, np.frombuffer(data[:72], np.uint8).reshape(4, 6, 3))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "bayer_rggb8", "yuv422"])
def test_is_bigendian_does_not_matter_for_8_bit_data(encoding):
    """CPP:302-307: one-byte depths are shared as they are, whatever is_bigendian says."""
    data = random_bytes(6 * 4 * bytes_per_pixel(encoding), seed=5)
    little = own_decode(message(encoding, 6, 4, data))
    big = own_decode(message(encoding, 6, 4, data, is_bigendian=1))
    np.testing.assert_array_equal(little.rgb, big.rgb)


def test_big_endian_samples_are_swapped_within_each_channel():
    """ENDIAN:6-38: a 1x1 32SC2 message holding 1 and 2 big-endian reads back 1, 2 (a type the
    package does not take: the same rule on 16 bits). CPP:309-327 swaps the bytes of each channel
    and keeps the channel order."""
    mono = own_decode(message("mono16", 2, 1, np.array([1, 2], ">u2").tobytes(), is_bigendian=1))
    np.testing.assert_array_equal(mono.full_depth, [[1, 2]])
    rgb = own_decode(message("rgb16", 1, 1, np.array([1, 2, 3], ">u2").tobytes(), is_bigendian=1))
    np.testing.assert_array_equal(rgb.full_depth, [[[1, 2, 3]]])
    bgr = own_decode(message("bgr16", 1, 1, np.array([1, 2, 3], ">u2").tobytes(), is_bigendian=1))
    np.testing.assert_array_equal(bgr.full_depth, [[[3, 2, 1]]])


def test_a_big_endian_array_round_trips():
    """CONV:70-78 test_endianness: a big-endian array -> message with is_bigendian set (PY:279-280)
    -> the same values back. (cv_bridge's test uses int32; 16 bits here.)"""
    values = np.random.default_rng(8).integers(0, 65536, (30, 40), dtype=np.uint16)
    msg = own_encode(values, "mono16", bigendian=True)
    assert msg.is_bigendian == 1 and bytes(msg.data) == values.astype(">u2").tobytes()
    np.testing.assert_array_equal(own_decode(msg).full_depth, values)


def test_rgb8_to_mono16_converts():
    """CONV:7-11 test_mono16_cv2: an rgb8 message asked for as mono16 converts (RGB2GRAY, CPP:163,
    then x 65535/255, CPP:360-361); the same pixels labelled 8UC3 do not (CPP:228-232)."""
    rgb = np.random.default_rng(9).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    msg = own_encode(rgb, "mono16")
    want = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
    np.testing.assert_array_equal(own_decode(msg).full_depth, want)
    with pytest.raises(ImageEncodeError, match="unsupported image encoding '8UC3'"):
        own_encode(rgb, "8UC3")


@pytest.mark.parametrize("h, w", [(100, 100), (300, 200), (700, 100)])
def test_rgb8_round_trip_and_mono_shape(h, w):
    """CONV:13-37 test_encode_decode_cv2: an image round-trips with its dtype and shape, a single
    channel as HxW. Difference: the package decodes to HxWx3 RGB for the network, a mono8 image as
    three equal channels (rgb[..., 0] is the HxW image)."""
    rng = np.random.default_rng(h + w)
    rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    np.testing.assert_array_equal(own_decode(own_encode(rgb, "rgb8")).rgb, rgb)
    mono = rng.integers(0, 255, (h, w), dtype=np.uint8)
    decoded = own_decode(own_encode(mono, "mono8"))
    assert decoded.rgb.shape == (h, w, 3) and decoded.rgb.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(decoded.rgb[:, :, c], mono)


def test_rgba8_of_1234_reads_as_49_50_51_with_alpha_52():
    """ENUM:10-19 test_enumerants_cv2: rgba8 640x480 whose bytes are "1234" repeated, asked for as
    rgb8: every pixel is (49, 50, 51); the package keeps the alpha, 52."""
    msg = message("rgba8", 640, 480, (640 * 480 * "1234").encode(), step=640 * 4)
    decoded = own_decode(msg)
    assert (decoded.rgb == np.array([49, 50, 51], np.uint8)).all()
    assert (decoded.alpha == 52).all()


def test_an_rgb_image_sent_as_rgba8_gets_an_opaque_alpha():
    """ENUM:24-29: cv2_to_imgmsg refuses a 3-channel image as rgba8 and accepts it as rgb8 or bgr8.
    Difference, on purpose: make_image_msg converts (cvtColor + toImageMsg, as in C++), so RGB sent
    as rgba8 gets alpha 255 (RGB2RGBA, CPP:165); rgb8 and bgr8 work as there."""
    rgb = np.random.default_rng(12).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    rgba = np.frombuffer(bytes(own_encode(rgb, "rgba8").data), np.uint8).reshape(4, 5, 4)
    np.testing.assert_array_equal(rgba[:, :, :3], rgb)
    assert (rgba[:, :, 3] == 255).all()
    assert bytes(own_encode(rgb, "rgb8").data) == rgb.tobytes()
    assert bytes(own_encode(rgb, "bgr8").data) == rgb[:, :, ::-1].tobytes()


def test_a_non_array_is_refused():
    """ENUM:35-39 test_numpy_types: cv2_to_imgmsg(1, 'rgba8') raises TypeError. Here the package's
    ImageEncodeError (a ValueError), as for every input it cannot encode."""
    with pytest.raises(ImageEncodeError, match="must be a numpy array"):
        own_encode(1, "rgba8")


def test_mono8_message_keeps_its_shape():
    """BIND:26-33: mono8 100x100 -> message -> mono8 has shape (100, 100). Difference: decoding
    gives (100, 100, 3) RGB with the grey in each channel."""
    mono = (np.random.default_rng(13).random((100, 100)) * 255).astype(np.uint8)
    msg = own_encode(mono, "mono8")
    assert (msg.height, msg.width, msg.step) == (100, 100, 100)
    np.testing.assert_array_equal(own_decode(msg).rgb[:, :, 1], mono)


@pytest.mark.parametrize("via", ["bgr8", "rgba8", "bgra8", "rgb16", "bgr16"])
def test_colour_round_trips_through_each_encoding(via):
    """UTEST2:78-171: rgb8 -> another colour encoding -> rgb8 is exact (UTEST2:165-168; cv_bridge
    checks pairs of equal channel counts, UTEST2:149-153: here 4-channel ones are exact too)."""
    rgb = np.random.default_rng(14).integers(0, 127, (40, 40, 3), dtype=np.uint8)  # UTEST2:87-88 values 0..126
    np.testing.assert_array_equal(own_decode(own_encode(rgb, via)).rgb, rgb)


def test_sixteen_bits_through_eight_lose_less_than_128():
    """UTEST2:159-164: 16-bit values through an 8-bit encoding and back differ by less than 128
    (values 0..126, UTEST2:87-88)."""
    values = np.random.default_rng(15).integers(0, 127, (40, 40, 3), dtype=np.uint16)
    eight = own_decode(own_encode(values, "rgb8")).rgb
    back = own_decode(own_encode(eight, "rgb16")).full_depth
    assert np.abs(back.astype(int) - values).max() < 128


@pytest.mark.parametrize("encoding, width, step", [("rgb8", 5, 16), ("mono16", 3, 7), ("bgra8", 2, 11)])
def test_rows_padded_by_part_of_a_pixel_read_like_cv_bridges_cpp(encoding, width, step):
    """CPP:299-300 reads rows `step` bytes apart, whatever the padding. cv_bridge's Python layer
    (PY:175-182, "Handle padded img msg in Python", 3.0.0) shapes rows as step / itemsize /
    channels elements, right for padding by whole pixels only. The package reads any step, as C++."""
    h = 3
    data = random_bytes(step * h, seed=step)
    msg = message(encoding, width, h, data, step=step)
    rgb, full = _decode_expectation(msg)
    decoded = own_decode(msg)
    np.testing.assert_array_equal(decoded.rgb, rgb)
    if full is not None:
        np.testing.assert_array_equal(decoded.full_depth, full)


# ============================================================================= Part 2: cv_bridge itself

def _usable_bridge_or_skip() -> None:
    cvb.reset_conversion_path()
    details = cvb.conversion_details()
    if details["path"] != cvb.CV_BRIDGE:
        if details["reason"] == cvb.NOT_IMPORTABLE:
            pytest.skip(cvb.NOT_IMPORTABLE)
        pytest.skip(f"cv_bridge imports here but is not usable: {details['reason']}")


def _kind_message(key: tuple, h: int = 11, w: int = 16, seed: int = 0) -> Image:
    name, padding, trailing, big = key
    pixel = bytes_per_pixel(name)
    step = w * pixel + {"none": 0, "whole_pixels": 2 * pixel, "other": 1}[padding]
    return message(name, w, h, random_bytes(step * h + (7 if trailing else 0), seed), step=step,
                   is_bigendian=int(big))


def _kind_image(key: tuple, seed: int = 0):
    _, source, target, big = key
    rng = np.random.default_rng(seed)
    dtype = np.uint16 if source.endswith("16") else np.uint8
    shape = (11, 16) if source.startswith("mono") else (11, 16, 3)
    image = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    alpha = rng.integers(0, 256, (11, 16), dtype=np.uint8) if source == "rgba8" else None
    return image, alpha


def _same_decoded(a, b) -> bool:
    return all((x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y))
               for x, y in ((a.rgb, b.rgb), (a.alpha, b.alpha), (a.full_depth, b.full_depth)))


def _fields(msg: Image) -> tuple:
    return (msg.encoding, msg.width, msg.height, msg.step, int(msg.is_bigendian), bytes(msg.data))


# What any cv_bridge gets right: every encoding both ROS 1's and ROS 2's cv_bridge.cpp know (yuv422_yuy2
# came with 3.0.0; ROS 1's 1.16 lacks it), rows unpadded, native byte order; every encoding from RGB/grey.
REQUIRED = [k for k in cvb.probe_kinds()
            if (k[0] == "encode" and not k[3])
            or (k[0] not in ("encode", "yuv422_yuy2") and k[1:] == ("none", False, False))]


def test_cv_bridge_and_the_own_conversion_agree(record_property):
    """Both paths on the same messages, every kind of frame: where cv_bridge converts a kind, its
    result is the package's to the bit; every kind cv_bridge is required to convert does."""
    _usable_bridge_or_skip()
    agree, differ = [], {}
    for i, key in enumerate(cvb.probe_kinds()):
        try:
            if key[0] == "encode":
                image, alpha = _kind_image(key, seed=i)
                kw = {"alpha": alpha, "bigendian": key[3]}
                same = _fields(make_image_msg(image, None, key[2], conversion="cv_bridge", **kw)) == \
                    _fields(own_encode(image, key[2], **kw))
            else:
                msg = _kind_message(key, seed=i)
                same = _same_decoded(image_msg_to_decoded(msg, conversion="cv_bridge"), own_decode(msg))
            why = "" if same else "different values"
        except Exception as exc:  # noqa: BLE001 - what this cv_bridge cannot do, reported below
            why = f"{type(exc).__name__}: {exc}"
        if why:
            differ[cvb._kind_label(key)] = why
        else:
            agree.append(key)
    record_property("cv_bridge_kinds_agreeing", len(agree))
    record_property("cv_bridge_kinds_not_converted", sorted(differ))
    missing = [cvb._kind_label(k) for k in REQUIRED if k not in agree]
    assert not missing, f"cv_bridge and the package differ on {missing}: {differ}"


def test_the_automatic_path_gives_the_documented_result_for_every_kind():
    """Whatever cv_bridge cannot do (e.g. rows padded by part of a pixel in its Python layer,
    big-endian frames with NumPy 2) goes to the package's own conversion: the result never differs."""
    _usable_bridge_or_skip()
    for i, key in enumerate(cvb.probe_kinds()):
        if key[0] == "encode":
            image, alpha = _kind_image(key, seed=100 + i)
            kw = {"alpha": alpha, "bigendian": key[3]}
            auto = make_image_msg(image, None, key[2], **kw)
            assert _fields(auto) == _fields(own_encode(image, key[2], **kw)), key
        else:
            msg = _kind_message(key, seed=100 + i)
            assert _same_decoded(image_msg_to_decoded(msg), own_decode(msg)), key
    assert cvb.conversion_path() == cvb.CV_BRIDGE


def test_cv_bridge_path_reads_unpadded_rgb8_without_copying():
    _usable_bridge_or_skip()
    rgb = np.random.default_rng(2).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    msg = make_image_msg(rgb, None, "rgb8", conversion="cv_bridge")
    decoded = image_msg_to_decoded(msg, conversion="cv_bridge")
    np.testing.assert_array_equal(decoded.rgb, rgb)
    assert np.shares_memory(decoded.rgb, np.frombuffer(msg.data, np.uint8))
    assert not decoded.rgb.flags.writeable


# ============================================================================= Part 3: choosing the path

@pytest.fixture
def fresh(monkeypatch):
    """A clean choice before and after; DAP_LED_CV_BRIDGE unset."""
    monkeypatch.delenv(cvb.SWITCH, raising=False)
    cvb.reset_conversion_path()
    yield monkeypatch
    cvb.reset_conversion_path()


class _RuleBridge:
    """A stand-in, not cv_bridge: imgmsg_to_cv2 / cv2_to_imgmsg by the rules above (cv_bridge_convert).
    `honour_step=False` reads rows as if unpadded, as PyPI's cv-bridge and ROS 1's cv_bridge do."""

    calls = 0

    def __init__(self, honour_step: bool = True, broken_encode: bool = False):
        self.honour_step, self.broken_encode = honour_step, broken_encode

    def imgmsg_to_cv2(self, msg, desired_encoding="passthrough"):
        type(self).calls += 1
        if msg.encoding not in CV_TYPE or msg.encoding.startswith("yuv422_"):  # an old cv_bridge
            raise TypeError(f"Unrecognized image encoding [{msg.encoding}]")
        if not self.honour_step:
            msg = message(msg.encoding, msg.width, msg.height, bytes(msg.data), is_bigendian=msg.is_bigendian)
        raw = raw_pixels(msg)
        return raw if desired_encoding == "passthrough" else cv_bridge_convert(raw, msg.encoding, desired_encoding)

    def cv2_to_imgmsg(self, image, encoding="passthrough"):
        if self.broken_encode:
            raise AttributeError("'numpy.ndarray' object has no attribute 'tostring'")
        big = image.dtype.byteorder == ">"
        return Image(height=image.shape[0], width=image.shape[1], encoding=encoding, is_bigendian=int(big),
                     step=image.nbytes // image.shape[0], data=array.array("B", image.tobytes()))


def _install(monkeypatch, bridge_factory) -> None:
    module = types.ModuleType("cv_bridge")
    module.CvBridge = bridge_factory
    module.__file__ = "<stand-in cv_bridge>"
    monkeypatch.setitem(sys.modules, "cv_bridge", module)


def test_without_cv_bridge_the_own_conversion_is_used_and_says_why(fresh):
    fresh.setitem(sys.modules, "cv_bridge", None)  # "import cv_bridge" raises ImportError
    assert cvb.conversion_path() == cvb.OWN
    assert cvb.conversion_summary() == f"own: {cvb.NOT_IMPORTABLE}"
    msg = own_encode(np.zeros((4, 6, 3), np.uint8), "bgr8")
    assert image_msg_to_decoded(msg).rgb.shape == (4, 6, 3)
    with pytest.raises(RuntimeError, match="not importable"):
        image_msg_to_decoded(msg, conversion="cv_bridge")


def test_a_cv_bridge_that_fails_the_self_check_is_not_used(fresh):
    """Like PyPI's cv-bridge on NumPy 2: it imports, then cv2_to_imgmsg calls ndarray.tostring."""
    _install(fresh, lambda: _RuleBridge(broken_encode=True))
    assert cvb.conversion_path() == cvb.OWN
    assert "failed the self-check" in cvb.conversion_summary()
    assert "tostring" in cvb.conversion_summary()


def test_a_working_cv_bridge_is_used_kinds_it_gets_wrong_are_not(fresh):
    _install(fresh, lambda: _RuleBridge(honour_step=False))
    assert cvb.conversion_path() == cvb.CV_BRIDGE
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)

    plain = own_encode(rgb, "bgr8")
    before = _RuleBridge.calls
    np.testing.assert_array_equal(image_msg_to_decoded(plain).rgb, rgb)
    assert _RuleBridge.calls > before  # converted by the bridge

    padded = message("bgr8", 12, 9, random_bytes(9 * 42), step=42)  # two pixels of padding
    np.testing.assert_array_equal(image_msg_to_decoded(padded).rgb, own_decode(padded).rgb)
    yuy2 = message("yuv422_yuy2", 12, 9, random_bytes(9 * 24))
    np.testing.assert_array_equal(image_msg_to_decoded(yuy2).rgb, own_decode(yuy2).rgb)
    details = cvb.conversion_details()["kinds"]
    assert details["bgr8"] == "cv_bridge"
    assert details["bgr8 padded"] == "own: different rgb values"
    assert details["yuv422_yuy2"].startswith("own: TypeError: Unrecognized image encoding")
    assert cvb.conversion_summary().startswith("cv_bridge; own for 2 kinds: bgr8 padded, yuv422_yuy2")

    before = _RuleBridge.calls
    image_msg_to_decoded(padded)
    assert _RuleBridge.calls == before  # decided once per kind

    out = make_image_msg(rgb, None, "mono16")  # by the bridge, as own
    assert _fields(out) == _fields(own_encode(rgb, "mono16"))
    assert cvb.conversion_details()["kinds"]["rgb8->mono16"] == "cv_bridge"
    yuv_out = make_image_msg(rgb, None, "yuv422")  # cv_bridge makes no yuv422: own
    assert _fields(yuv_out) == _fields(own_encode(rgb, "yuv422"))


def test_malformed_frames_get_the_packages_error_on_the_cv_bridge_path(fresh):
    _install(fresh, _RuleBridge)
    msg = own_encode(np.zeros((4, 6, 3), np.uint8), "rgb8")
    msg.step = 17
    with pytest.raises(ImageDecodeError, match="step 17 is smaller than"):
        image_msg_to_decoded(msg)
    with pytest.raises(ImageEncodeError, match="image dtype must be uint8 or uint16"):
        make_image_msg(np.zeros((4, 6, 3), np.float32), None, "bgr8")


def test_a_kind_that_fails_on_a_real_frame_falls_back_for_good(fresh):
    class Flaky(_RuleBridge):
        def imgmsg_to_cv2(self, msg, desired_encoding="passthrough"):
            if msg.height > 100:
                raise RuntimeError("boom")
            return super().imgmsg_to_cv2(msg, desired_encoding)

    _install(fresh, Flaky)
    big = message("bgr8", 20, 120, random_bytes(20 * 120 * 3))
    np.testing.assert_array_equal(image_msg_to_decoded(big).rgb, own_decode(big).rgb)
    assert cvb.conversion_details()["kinds"]["bgr8"].startswith("own: failed on a frame (RuntimeError: boom")


def test_the_switch_keeps_cv_bridge_out(fresh):
    _install(fresh, _RuleBridge)
    fresh.setenv(cvb.SWITCH, "off")
    assert cvb.conversion_path() == cvb.OWN
    assert cvb.conversion_summary() == f"own: {cvb.SWITCH}=off"


def test_edge_aware_demosaic_stays_with_the_own_conversion(fresh):
    _install(fresh, _RuleBridge)
    msg = message("bayer_rggb8", 8, 6, random_bytes(48))
    assert cvb.conversion_path() == cvb.CV_BRIDGE  # the self-check runs here
    before = _RuleBridge.calls
    image_msg_to_decoded(msg, demosaic="edge_aware")
    assert _RuleBridge.calls == before

"""Tests for sensor_msgs/Image helpers (dap_led_ros.ros.msg_conversion); no nodes needed."""
from __future__ import annotations

import re

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dap_led_ros.imaging.image_encoding import ImageDecodeError, ImageEncodeError, encode_image
from dap_led_ros.ros.msg_conversion import image_msg_to_decoded, make_image_msg

H, W = 12, 16


def header() -> Header:
    return Header(stamp=Time(sec=1234, nanosec=567), frame_id="camera_optical")


def rgb_image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "rgb16"])
def test_array_to_msg_and_back_survives_serialization(encoding):
    rgb = rgb_image()
    msg = make_image_msg(rgb, header(), encoding)
    assert (msg.width, msg.height, msg.encoding) == (W, H, encoding)
    assert msg.step == len(msg.data) // H and msg.is_bigendian == 0
    assert msg.header.frame_id == "camera_optical"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1234, 567)

    # What a subscriber in another process receives.
    received = deserialize_message(serialize_message(msg), Image)
    decoded = image_msg_to_decoded(received)
    assert decoded.encoding == encoding
    np.testing.assert_array_equal(decoded.rgb, rgb)
    assert received.header.frame_id == "camera_optical"


def test_msg_data_holds_the_encoded_bytes():
    rgb = rgb_image(1)
    encoded = encode_image(rgb, "bgr8")
    msg = make_image_msg(encoded, header())
    assert msg.data.tobytes() == encoded.data
    assert msg.encoding == "bgr8" and msg.step == 3 * W


def test_decoding_reads_msg_data_without_copying():
    msg = make_image_msg(rgb_image(2), header(), "rgb8")
    decoded = image_msg_to_decoded(msg)
    assert np.shares_memory(decoded.rgb, np.frombuffer(msg.data, np.uint8))
    assert not decoded.rgb.flags.writeable  # processing cannot scribble on the message


def test_big_endian_mono16_message():
    values = np.random.default_rng(3).integers(0, 65536, (H, W), dtype=np.uint16)
    msg = make_image_msg(values, header(), "mono16", bigendian=True)
    assert msg.is_bigendian == 1
    assert msg.data.tobytes() == values.astype(">u2").tobytes()
    received = deserialize_message(serialize_message(msg), Image)
    np.testing.assert_array_equal(image_msg_to_decoded(received).full_depth, values)


def test_alpha_passes_through_messages():
    rgba = np.random.default_rng(4).integers(0, 256, (H, W, 4), dtype=np.uint8)
    incoming = Image(header=header(), height=H, width=W, encoding="rgba8", step=4 * W,
                     data=rgba.tobytes())
    decoded = image_msg_to_decoded(incoming)
    outgoing = make_image_msg(decoded.rgb, incoming.header, "rgba8", alpha=decoded.alpha)
    assert outgoing.data.tobytes() == rgba.tobytes()


def test_missing_header_gives_an_empty_one():
    msg = make_image_msg(rgb_image(), None, "mono8")
    assert msg.header.frame_id == "" and msg.encoding == "mono8" and msg.step == W


def test_make_image_msg_errors():
    with pytest.raises(ImageEncodeError, match="an encoding is required"):
        make_image_msg(rgb_image(), header(), None)
    encoded = encode_image(rgb_image(), "rgb8")
    with pytest.raises(ImageEncodeError,
                       match="encoding 'bgr8' does not match the EncodedImage's 'rgb8'"):
        make_image_msg(encoded, header(), "bgr8")
    assert make_image_msg(encoded, header(), "RGB8").encoding == "rgb8"
    with pytest.raises(ImageEncodeError, match="unsupported image encoding 'jpeg'"):
        make_image_msg(rgb_image(), header(), "jpeg")


def test_malformed_messages_raise_decode_errors():
    msg = make_image_msg(rgb_image(), header(), "rgb8")
    msg.step = 3 * W - 1
    with pytest.raises(ImageDecodeError,
                       match=re.escape("step 47 is smaller than width*bytes_per_pixel")):
        image_msg_to_decoded(msg)

    msg = make_image_msg(rgb_image(), header(), "rgb8")
    msg.data = msg.data[: -1]
    with pytest.raises(ImageDecodeError, match="575 bytes, fewer than step"):
        image_msg_to_decoded(msg)

    msg = make_image_msg(rgb_image(), header(), "rgb8")
    with pytest.raises(ImageDecodeError, match="more than max_input_pixels=100"):
        image_msg_to_decoded(msg, max_input_pixels=100)

    msg.encoding = "32FC1"
    with pytest.raises(ImageDecodeError, match="unsupported image encoding '32FC1'"):
        image_msg_to_decoded(msg)

    empty = Image(encoding="rgb8")
    with pytest.raises(ImageDecodeError, match="must be positive, got 0x0"):
        image_msg_to_decoded(empty)


def test_bayer_message_decodes_with_ros_pattern_naming():
    red = np.zeros((H, W, 3), dtype=np.uint8)
    red[..., 0] = 200
    msg = make_image_msg(red, header(), "bayer_rggb8")
    assert msg.step == W and msg.encoding == "bayer_rggb8"
    decoded = image_msg_to_decoded(msg, demosaic="edge_aware")
    assert decoded.rgb[..., 0].min() >= 190 and decoded.rgb[..., 1:].max() <= 10

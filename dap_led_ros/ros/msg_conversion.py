"""sensor_msgs/Image <-> numpy, on top of the ROS-free dap_led_ros.imaging.image_encoding; CompressedImage messages."""
from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dap_led_ros.imaging.image_encoding import (
    DEFAULT_MAX_INPUT_PIXELS,
    DecodedImage,
    EncodedImage,
    ImageEncodeError,
    decode_image,
    encode_image,
    shown,
)


def image_msg_to_decoded(
    msg: Image, max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS, demosaic: str = "bilinear"
) -> DecodedImage:
    """Decode a sensor_msgs/Image (reads msg.data without copying it).

    Raises dap_led_ros.imaging.image_encoding.ImageDecodeError for a malformed or unsupported message.
    """
    return decode_image(
        msg.encoding, msg.width, msg.height, msg.step, msg.is_bigendian, msg.data,
        max_input_pixels=max_input_pixels, demosaic=demosaic,
    )


def make_image_msg(
    rgb_or_encoded: np.ndarray | EncodedImage,
    header: Header | None,
    encoding: str | None = None,
    alpha: np.ndarray | None = None,
    bigendian: bool = False,
) -> Image:
    """Build a sensor_msgs/Image from an array (encoded into `encoding`) or an EncodedImage.

    header is used as is (pass the input message's header to keep stamp and frame_id).
    For an EncodedImage, `encoding` may be omitted; if given it must match.
    """
    if isinstance(rgb_or_encoded, EncodedImage):
        encoded = rgb_or_encoded
        if encoding is not None and str(encoding).strip().lower() != encoded.encoding:
            raise ImageEncodeError(
                f"encoding {shown(encoding)} does not match the EncodedImage's '{encoded.encoding}'")
    else:
        if encoding is None:
            raise ImageEncodeError("an encoding is required to publish a numpy image")
        encoded = encode_image(rgb_or_encoded, encoding, alpha=alpha, bigendian=bigendian)

    msg = Image()
    msg.header = header if header is not None else Header()
    msg.height = encoded.height
    msg.width = encoded.width
    msg.encoding = encoded.encoding
    msg.is_bigendian = encoded.is_bigendian
    msg.step = encoded.step
    msg.data = _byte_array(encoded.data)
    return msg


def make_compressed_msg(fmt: str, data: bytes, header: Header | None) -> CompressedImage:
    """A sensor_msgs/CompressedImage of `format` and JPEG/PNG bytes, with `header` as is."""
    msg = CompressedImage()
    msg.header = header if header is not None else Header()
    msg.format = fmt
    msg.data = _byte_array(data)
    return msg


def _byte_array(data: bytes) -> array.array:
    """One memcpy into the array.array('B') rclpy stores; assigning the bytes object directly
    would run a per-byte check when ROS_PYTHON_CHECK_FIELDS=1."""
    out = array.array("B")
    out.frombytes(data)
    return out

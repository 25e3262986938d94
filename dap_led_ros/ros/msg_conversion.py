"""sensor_msgs/Image <-> numpy; CompressedImage messages.

Image messages are converted by cv_bridge where this process has a working one, else by the
ROS-free dap_led_ros.imaging.image_encoding (same semantics: test/test_cv_bridge_parity.py).
Which one: conversion_path() ("cv_bridge" / "own"), logged once, `image_conversion` in /diagnostics;
the choice and its self-check live in dap_led_ros.ros.cv_bridge_conversion.
"""
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
    encode_image,
    shown,
)
from dap_led_ros.ros import cv_bridge_conversion
from dap_led_ros.ros.cv_bridge_conversion import conversion_path, conversion_summary

__all__ = ["conversion_path", "conversion_summary", "image_msg_to_decoded", "make_compressed_msg", "make_image_msg"]


def image_msg_to_decoded(
    msg: Image, max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS, demosaic: str = "bilinear",
    conversion: str | None = None,
) -> DecodedImage:
    """Decode a sensor_msgs/Image (an unpadded rgb8 one is read without copying msg.data).

    conversion: None (cv_bridge where usable, else the package's own), "own" or "cv_bridge".
    Raises dap_led_ros.imaging.image_encoding.ImageDecodeError for a malformed or unsupported message.
    """
    return cv_bridge_conversion.decode(msg, max_input_pixels=max_input_pixels, demosaic=demosaic,
                                       conversion=conversion)


def make_image_msg(
    rgb_or_encoded: np.ndarray | EncodedImage,
    header: Header | None,
    encoding: str | None = None,
    alpha: np.ndarray | None = None,
    bigendian: bool = False,
    conversion: str | None = None,
) -> Image:
    """Build a sensor_msgs/Image from an array (encoded into `encoding`) or an EncodedImage.

    header is used as is (pass the input message's header to keep stamp and frame_id).
    For an EncodedImage, `encoding` may be omitted; if given it must match.
    An array is converted by cv_bridge where usable for it (conversion None), else by encode_image;
    conversion "own" / "cv_bridge" picks one.
    """
    if isinstance(rgb_or_encoded, EncodedImage):
        encoded = rgb_or_encoded
        if encoding is not None and str(encoding).strip().lower() != encoded.encoding:
            raise ImageEncodeError(
                f"encoding {shown(encoding)} does not match the EncodedImage's '{encoded.encoding}'")
    else:
        if encoding is None:
            raise ImageEncodeError("an encoding is required to publish a numpy image")
        bridged = cv_bridge_conversion.encode(rgb_or_encoded, encoding, alpha=alpha, bigendian=bigendian,
                                              conversion=conversion)
        if bridged is not None:
            bridged.header = header if header is not None else Header()
            return bridged
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

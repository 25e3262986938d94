"""ament_python package that also installs with pip (same console scripts)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "dap_led_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["weights/*.safetensors", "weights/*.yaml", "weights/*.onnx", "weights/*.md", "weights/ablation/*", "data/*", "data/**/*"]},
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    python_requires=">=3.10",
    zip_safe=False,
    maintainer="dap_led_ros developers",
    description="DAP-LED night-frame restoration for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "dap-led = dap_led_ros.cli:main",
            "enhance_node = dap_led_ros.ros.enhance_node:main",
            "depth_node = dap_led_ros.ros.depth_node:main",
            "detect_node = dap_led_ros.ros.detect_node:main",
        ],
    },
)

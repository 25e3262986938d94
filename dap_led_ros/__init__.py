"""dap_led_ros: joint low-light enhancement and deblurring (DAP-LED) for ROS 2 camera streams."""
__version__ = "0.1.0"

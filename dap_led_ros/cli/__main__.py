"""`python -m dap_led_ros.cli`: the `dap-led` command."""
import sys

from dap_led_ros.cli import main

sys.exit(main())

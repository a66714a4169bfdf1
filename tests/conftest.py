"""Test set-up shared by the whole suite.

Eight fake CPU devices are requested before anything imports jax, so sharding tests run for real
on a 1-device and an 8-device mesh on any machine.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

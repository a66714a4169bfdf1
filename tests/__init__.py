"""The test suite, laid out like the package it tests (tests/execution/ tests next_jax/execution/).

Every test directory is a package, so pytest imports each test file under its dotted path from the
repository root (``tests.data.test_build``) and two directories may hold files of the same name;
helpers are imported the same way (``from tests.execution import sandbox_targets``).
"""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

"""next_jax: NExT (Naturalized Execution Tuning) in JAX.

The pins (requirements*.txt) are the set seen installing and working together on the project's
machines.
"""

import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _requirements(name):
    with open(os.path.join(HERE, name)) as f:
        return [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]


_test = _requirements("requirements-test.txt")
_bench = [r for r in _test if not r.startswith("pytest")]

setup(
    name="next_jax",
    version="0.1.0",
    description="NExT: teaching code LLMs to repair programs by reasoning over execution traces, in JAX",
    long_description=open(os.path.join(HERE, "README.md")).read() if os.path.exists(os.path.join(HERE, "README.md")) else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["next_jax", "next_jax.*"]),
    include_package_data=True,
    install_requires=_requirements("requirements.txt"),
    extras_require={
        "test": _test,
        "bench": _bench,
        "tpu": ["jax[tpu]==0.10.2"],
        "gpu": ["jax[cuda12]==0.10.2"],
    },
    entry_points={"console_scripts": ["next_jax=next_jax.main:main"]},
)

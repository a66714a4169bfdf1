"""launch/host_allocator.sh: the glibc settings CPU jobs run under; a freed large block is reused without faults."""

import os
import subprocess
import sys
import textwrap

import pytest
from tests import REPO

SCRIPT = os.path.join(REPO, "launch", "host_allocator.sh")
OPT_OUT = "NEXT_JAX_HOST_ALLOCATOR"

# Allocates a 256 MiB block, touches it, frees it, and does the same again: prints the minor page
# faults of the second touch. XLA:CPU does exactly this with each step's temporaries buffer.
REUSE_PROGRAM = textwrap.dedent("""
    import ctypes, resource
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    size = 256 << 20
    def touch():
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)
        return block
    libc.free(ctypes.c_void_p(touch()))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = touch()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults_of_second_touch(env) -> int:
    out = subprocess.run([sys.executable, "-c", REUSE_PROGRAM], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout)


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", OPT_OUT)}
    env.update(extra)
    return env


def _script(*args, **env) -> str:
    return subprocess.run([SCRIPT, *args], env=_env(**env), capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tunables are Linux-only")
def test_settings_make_a_freed_large_block_reusable_without_faults():
    pages = (256 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert _faults_of_second_touch(_env()) > pages // 2  # glibc's default: a fresh mmap each time
    assert _faults_of_second_touch(_env(GLIBC_TUNABLES=_script())) < pages // 100


def test_settings_keep_what_the_environment_names_and_can_be_refused():
    ours = _script().split(":")
    assert [s.split("=")[0] for s in ours] == ["glibc.malloc.arena_max", "glibc.malloc.mmap_max",
                                               "glibc.malloc.trim_threshold"]
    merged = _script(GLIBC_TUNABLES="glibc.malloc.arena_max=4:glibc.cpu.x86_shstk=off").split(":")
    assert merged[:2] == ["glibc.malloc.arena_max=4", "glibc.cpu.x86_shstk=off"] and ours[1] in merged
    assert "glibc.malloc.arena_max=1" not in merged
    assert _script(**{OPT_OUT: "default"}) == ""


def test_the_script_runs_a_command_with_them_and_the_launcher_sources_it():
    assert _script(sys.executable, "-c", "import os; print(os.environ['GLIBC_TUNABLES'])") == _script()
    sourced = subprocess.run(["bash", "-c", f"source {SCRIPT}; echo \"$GLIBC_TUNABLES\""], env=_env(),
                             capture_output=True, text=True, check=True).stdout.strip()
    assert sourced == _script()
    with open(os.path.join(os.path.dirname(SCRIPT), "tpu_run.sh")) as f:
        assert 'source "$here/launch/host_allocator.sh"' in f.read()

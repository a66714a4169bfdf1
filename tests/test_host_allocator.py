"""The glibc settings under which CPU training runs: a freed large block is reused without faults."""

import os
import subprocess
import sys
import textwrap

import pytest

from next_jax import host_allocator

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
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", host_allocator.OPT_OUT)}
    env.update(extra)
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tunables are Linux-only")
def test_settings_make_a_freed_large_block_reusable_without_faults():
    pages = (256 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert _faults_of_second_touch(_env()) > pages // 2  # glibc's default: a fresh mmap each time
    assert _faults_of_second_touch(_env(GLIBC_TUNABLES=host_allocator.tunables())) < pages // 100


def test_tunables_keep_settings_the_environment_names():
    assert host_allocator.tunables() == ":".join(f"{k}={v}" for k, v in host_allocator.SETTINGS)
    merged = host_allocator.tunables("glibc.malloc.arena_max=4:glibc.cpu.x86_shstk=off")
    assert merged.split(":")[:2] == ["glibc.malloc.arena_max=4", "glibc.cpu.x86_shstk=off"]
    assert "glibc.malloc.arena_max=1" not in merged and "glibc.malloc.mmap_max=0" in merged
    assert host_allocator.applied({"GLIBC_TUNABLES": merged})
    assert not host_allocator.applied({"GLIBC_TUNABLES": "glibc.malloc.arena_max=1"})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tunables are Linux-only")
@pytest.mark.parametrize("opt_out", [False, True])
def test_restart_runs_the_module_again_with_the_settings(opt_out):
    # The restarted process is `python -m next_jax.host_allocator`, which prints GLIBC_TUNABLES
    # as it sees them plus the settings; the process that restarts it would print "not restarted".
    program = ("from next_jax import host_allocator; host_allocator.restart_with_settings('next_jax.host_allocator'); "
               "print('not restarted')")
    env = _env(**({host_allocator.OPT_OUT: "default"} if opt_out else {}))
    out = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ("not restarted" if opt_out else host_allocator.tunables())

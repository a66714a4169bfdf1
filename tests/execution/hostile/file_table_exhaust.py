# task: add
# expect: error|timeout
# threat: exhausting the kernel's file table for the host and later runs: 12 processes each open, map and close a file 60,000 times (a mapping keeps its file open with no descriptor counted by RLIMIT_NOFILE), then answers right; bounded by the run's kernel-memory limit (error), or by the per-test timeout on a machine too busy to reach it in time (tests/execution/test_judge_state.py checks the kernel-memory limit with a longer timeout)
import ctypes
import os
import time

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long]
_kids = []
for _ in range(12):
    pid = os.fork()
    if pid == 0:
        for _ in range(60_000):
            try:
                fd = os.open(os.__file__, os.O_RDONLY)
            except OSError:
                break
            _libc.mmap(None, 4096, 1, 2, fd, 0)  # PROT_READ, MAP_PRIVATE
            os.close(fd)
        time.sleep(3)
        os._exit(0)
    _kids.append(pid)
for pid in _kids:
    os.waitpid(pid, 0)


def add(a, b):
    return a + b

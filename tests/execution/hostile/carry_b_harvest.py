# task: add
# expect: fail
# threat: state that outlives a run: answers right only if it finds the note carry_a_plant.py left in an earlier run (any kernel key listed in /proc/keys or found in its keyrings, /dev/shm, /tmp, SysV shared memory)
import ctypes
import os

NOTE = b"nj-carry:add=a+b"
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.shmat.restype = ctypes.c_void_p


def _found():
    buf = ctypes.create_string_buffer(64)
    serials = []
    try:
        with open("/proc/keys") as f:
            serials = [int(line.split()[0], 16) for line in f]
    except OSError:
        pass
    for ring in (-3, -4, -5, _libc.syscall(250, 22, -1, -2)):
        for i in range(4):
            serials.append(_libc.syscall(250, 10, ring, b"user", b"nj_carry_%d" % i, 0))
    for serial in serials:
        if serial > 0 and _libc.syscall(250, 11, serial, buf, 64) > 0 and buf.value == NOTE:
            return True
    for path in ("/dev/shm/nj_carry", "/tmp/nj_carry"):
        try:
            with open(path, "rb") as f:
                if f.read() == NOTE:
                    return True
        except OSError:
            pass
    shmid = _libc.shmget(0x4E4A4341, 4096, 0)
    return shmid >= 0 and ctypes.string_at(_libc.shmat(shmid, None, 0), len(NOTE)) == NOTE


_KNOWS = _found()


def add(a, b):
    return a + b if _KNOWS else 0

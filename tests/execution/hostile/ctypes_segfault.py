# task: add
# expect: error
# threat: crashes the interpreter through ctypes (writes through a null pointer)
import ctypes


def add(a, b):
    ctypes.memset(0, 1, 16)
    return a + b

# task: add
# expect: pass
# threat: none (a correct program that opens and closes a thousand temporary files, as the run after file_table_exhaust.py may: the file table must still have room)
import os

for i in range(1000):
    with open(f"scratch_{i % 10}.txt", "w") as f:
        f.write(str(i))
_fds = [os.open(os.__file__, os.O_RDONLY) for _ in range(500)]
for _fd in _fds:
    os.close(_fd)


def add(a, b):
    return a + b

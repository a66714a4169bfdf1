# task: add
# expect: error
# threat: writes outside its working directory (shared temp dir, home, the project)
import os


def add(a, b):
    for path in ("/tmp/next_jax_sandbox_escape", "/var/tmp/escape", os.path.expanduser("~root/escape"),
                 "/dev/shm/escape", "/etc/escape"):
        with open(path, "w") as f:
            f.write("escaped")
    return a + b

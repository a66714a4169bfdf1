# task: greet
# expect: pass
# threat: none (writes and reads files in its working dir and through tempfile)
import os
import tempfile


def greet(name):
    with open("note.txt", "w") as f:
        f.write(name)
    with tempfile.NamedTemporaryFile("w+", delete=False) as f:
        f.write("hello ")
        path = f.name
    with open(path) as f:
        prefix = f.read()
    os.makedirs("sub/dir", exist_ok=True)
    with open("note.txt") as f:
        return prefix + f.read()

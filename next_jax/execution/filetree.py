"""The files sandboxed children may see, and removal of a working dir a child may have booby-trapped."""

from __future__ import annotations

import os
import sys
import sysconfig


def allowed_paths(preload) -> tuple:
    """(dirs, files, covered) of the file tree children see: the interpreter, the standard
    library (without its site-packages), the system's shared libraries (without other Pythons'
    packages), this package's code and the preloaded third-party packages."""
    stdlib = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
    dirs = {os.path.realpath(p) for p in stdlib}
    dirs.add(os.path.dirname(os.path.abspath(__file__)))  # next_jax.execution, for lazy imports
    files = {sys.executable, os.path.realpath(sys.executable)}
    for lib in ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib"):
        if os.path.isdir(lib):
            dirs.add(lib)
    covered = set()
    for lib in ("/usr/lib", "/usr/lib64", "/usr/local/lib", *stdlib):
        if os.path.isdir(lib):
            for name in os.listdir(lib):
                path = os.path.realpath(os.path.join(lib, name))
                if (name.startswith("python") or name in ("site-packages", "dist-packages")) \
                        and path not in dirs:
                    covered.add(path)
    for name in preload:
        module = sys.modules.get(name.partition(".")[0])
        where = getattr(module, "__file__", None) or ""
        if not where or any(where.startswith(p + os.sep) for p in dirs if p in stdlib):
            continue
        if os.path.basename(where) == "__init__.py":
            where = os.path.dirname(where)
            libs = where + ".libs"
            if os.path.isdir(libs):
                dirs.add(libs)
            dirs.add(where)
        else:
            files.add(where)
    return sorted(dirs), sorted(files), sorted(covered)


def remove_tree(path: str) -> None:
    """Removes a child's working dir without following any link it planted (fd-relative)."""
    try:
        os.rmdir(path)  # the common case: the check wrote nothing
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    for attempt in range(2):
        try:
            for root, dirs, files, rootfd in os.fwalk(path, topdown=False):
                for name in files:
                    os.unlink(name, dir_fd=rootfd)
                for name in dirs:
                    try:
                        os.rmdir(name, dir_fd=rootfd)
                    except NotADirectoryError:  # a symlink to a directory
                        os.unlink(name, dir_fd=rootfd)
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except PermissionError:  # without root: a dir the child made unreadable
            for root, dirs, _, rootfd in os.fwalk(path):
                for name in dirs:
                    try:
                        os.chmod(name, 0o700, dir_fd=rootfd, follow_symlinks=False)
                    except OSError:
                        pass

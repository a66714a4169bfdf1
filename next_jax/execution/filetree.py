"""The files sandboxed children may see, and removal of a working dir a child may have booby-trapped."""

from __future__ import annotations

import os
import sys
import sysconfig


_LIB_ROOTS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib")
_PYTHON_DIR_NAMES = ("site-packages", "dist-packages")


def _is_shared_object(name: str) -> bool:
    return name.endswith(".so") or ".so." in name


def _ld_so_conf_dirs(path: str = "/etc/ld.so.conf", depth: int = 0) -> set:
    """The directories the dynamic loader's configuration lists (``include`` globs followed)."""
    import glob
    out = set()
    try:
        with open(path) as f:
            lines = [line.split("#", 1)[0].strip() for line in f]
    except OSError:
        return out
    for line in lines:
        if line.startswith("include ") and depth < 4:
            for conf in sorted(glob.glob(line.split(None, 1)[1])):
                out |= _ld_so_conf_dirs(conf, depth + 1)
        elif line.startswith("/"):
            out.add(line)
    return out


def library_dirs() -> set:
    """Directories of the system's shared libraries: the multiarch ones, those the loader's
    configuration lists, and a lib root itself only where it holds shared objects directly
    (not Debian's /usr/lib, whose other directories hold whole applications: a cloud SDK
    with its own Python packages, a JVM, node modules)."""
    import sysconfig
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    found = set()
    for root in _LIB_ROOTS:
        if multiarch:
            found.add(os.path.join(root, multiarch))
        try:
            if any(_is_shared_object(n) for n in os.listdir(root)):
                found.add(root)
        except OSError:
            pass
    found |= _ld_so_conf_dirs()
    return {d for d in found if os.path.isdir(d)}


def allowed_paths(preload) -> tuple:
    """(dirs, files, covered) of the file tree children see: the interpreter, the standard
    library (without its site-packages), the system's shared libraries (``library_dirs``,
    without any Python packages inside them), this package's code and the preloaded
    third-party packages. Nothing else of the lib roots is shown."""
    stdlib = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
    dirs = {os.path.realpath(p) for p in stdlib}
    dirs.add(os.path.dirname(os.path.abspath(__file__)))  # next_jax.execution, for lazy imports
    files = {sys.executable, os.path.realpath(sys.executable)}
    libs = library_dirs()
    dirs |= libs
    covered = set()
    for lib in sorted(libs | stdlib):
        for name in os.listdir(lib):
            path = os.path.realpath(os.path.join(lib, name))
            if (name.startswith("python") or name in _PYTHON_DIR_NAMES) and path not in dirs \
                    and os.path.isdir(path):
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

r"""The next_jax binary: one absl app that runs any entry function, configured by gin.

    python -m next_jax.main --run_mode=infer \
        --gin_file=gin_configs/experiments/cpu_demo.gin \
        --gin.MODEL_DIR=\"/tmp/run\" --gin.infer.num_samples=4

Flags, as in T5X: ``--gin_file`` (repeatable; later files override earlier ones), ``--gin_bindings``
(repeatable), ``--gin.NAME=VALUE`` (rewritten to a binding ``NAME = VALUE``), ``--gin_search_paths``
(where ``include`` and relative ``--gin_file`` paths are looked up; the repository root and its
``gin_configs/`` are always searched). A binding gin cannot parse, or one that names an unknown
function, parameter or macro, stops the run before any work with a message that names it.

The operative config (only the values the run used) is written to ``MODEL_DIR/config.gin`` when the
entry function returns; the full parsed config is written there first, so a crashed run still
leaves a record of what it was asked to do.

``--multihost`` (set by ``launch/tpu_run.sh --tpu=...``) calls ``jax.distributed.initialize()``
before anything touches a device, which every multi-host JAX program must do.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Callable, Dict, List, Sequence

# The run modes and the entry function each one calls. Entry functions are keyword-only and take
# everything from gin; the modules are imported lazily so `--help` stays fast.
RUN_MODES: Dict[str, str] = {
    "infer": "next_jax.infer:infer",
    "pipeline": "next_jax.pipeline:run_pipeline",
}

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SEARCH_PATHS = (REPO_ROOT, os.path.join(REPO_ROOT, "gin_configs"))


_MISSING_ARGUMENT = re.compile(r"^\w+\(\) (missing \d+ required|got an unexpected keyword)")


class ConfigError(Exception):
    """A configuration problem the user must fix; printed without a traceback."""


def rewrite_gin_flags(argv: Sequence[str]) -> List[str]:
    """Turns T5X-style ``--gin.NAME=VALUE`` arguments into ``--gin_bindings=NAME = VALUE``."""
    out = []
    for arg in argv:
        if arg.startswith("--gin.") and not arg.startswith("--gin_"):
            body = arg[len("--gin.") :]
            if "=" not in body or not body.split("=", 1)[0]:
                raise ConfigError(f"malformed gin flag {arg!r}: expected --gin.NAME=VALUE")
            name, value = body.split("=", 1)
            out.append(f"--gin_bindings={name} = {value}")
        else:
            out.append(arg)
    return out


def _raised_inside(error: BaseException, fn: Callable) -> bool:
    """Whether ``error`` passed through a frame of ``fn`` (as opposed to failing at its call)."""
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is fn.__code__:
            return True
        tb = tb.tb_next
    return False


def resolve_entry(run_mode: str) -> Callable:
    if run_mode not in RUN_MODES:
        raise ConfigError(f"unknown --run_mode={run_mode!r}; choose one of {sorted(RUN_MODES)}")
    module_name, fn_name = RUN_MODES[run_mode].split(":")
    module = importlib.import_module(module_name)
    return getattr(module, fn_name)


def parse_gin(gin_files: Sequence[str], gin_bindings: Sequence[str], search_paths: Sequence[str]):
    """Parses gin files and bindings; any error becomes a ConfigError naming the culprit."""
    import gin

    for path in list(search_paths) + list(DEFAULT_SEARCH_PATHS):
        gin.add_config_file_search_path(path)
    for path in gin_files:
        if not _find_gin_file(path, search_paths):
            raise ConfigError(f"--gin_file={path}: no such file (searched {list(search_paths) + list(DEFAULT_SEARCH_PATHS)})")
    try:
        gin.parse_config_files_and_bindings(list(gin_files), list(gin_bindings), finalize_config=False)
        gin.finalize()  # reports %gin.REQUIRED values left unbound, before any work starts
    except Exception as e:  # gin raises ValueError, SyntaxError, tokenize.TokenError, ...
        raise ConfigError(f"gin configuration error: {e}") from None


def _find_gin_file(path: str, search_paths: Sequence[str]) -> bool:
    if os.path.exists(path):
        return True
    return any(os.path.exists(os.path.join(p, path)) for p in list(search_paths) + list(DEFAULT_SEARCH_PATHS))


def model_dir_from_gin() -> str | None:
    import gin

    try:
        value = gin.query_parameter("%MODEL_DIR")
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def write_config(model_dir: str, text: str) -> str:
    """Writes MODEL_DIR/config.gin atomically (only process 0 writes in multi-host runs)."""
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, "config.gin")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def run(run_mode, gin_files, gin_bindings, search_paths, multihost: bool = False):
    """Parses the configuration, calls the entry function, records the operative config.

    ``run_mode`` may be None: experiment files name their own with ``RUN_MODE = 'infer'``, so
    ``launch/tpu_run.sh --gin_file=EXPERIMENT.gin`` is a whole command.
    """
    import gin

    if multihost:
        import jax

        jax.distributed.initialize()
    parse_gin(gin_files, gin_bindings, search_paths)
    if run_mode is None:
        try:
            run_mode = gin.query_parameter("%RUN_MODE")
        except ValueError:
            raise ConfigError(
                "no --run_mode given and the gin files set no RUN_MODE macro; "
                f"choose one of {sorted(RUN_MODES)}"
            ) from None
    entry = resolve_entry(run_mode)
    try:
        configured = gin.get_configurable(entry)
    except ValueError:
        configured = gin.external_configurable(entry)
    model_dir = model_dir_from_gin()
    is_chief = True
    if multihost:
        import jax

        is_chief = jax.process_index() == 0
    if model_dir and is_chief:
        write_config(model_dir, gin.config_str())
    try:
        result = configured()
    except TypeError as e:
        # An entry argument that no gin file or binding supplied fails at the call itself; any
        # other error comes from inside the run and keeps its traceback.
        if _MISSING_ARGUMENT.match(str(e)) and not _raised_inside(e, entry):
            raise ConfigError(f"{e} (bind it in a gin file or with --gin.NAME=VALUE)") from None
        raise
    if model_dir and is_chief:
        write_config(model_dir, gin.operative_config_str())
    return result


def main(argv=None) -> int:
    from absl import app, flags

    flags.DEFINE_enum(
        "run_mode", None, sorted(RUN_MODES), "Entry function to run (default: the gin macro RUN_MODE)."
    )
    flags.DEFINE_multi_string("gin_file", [], "Gin config files, parsed in order.")
    flags.DEFINE_multi_string("gin_bindings", [], "Individual gin bindings, applied after the files.")
    flags.DEFINE_list("gin_search_paths", [], "Directories searched for gin files and includes.")
    flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (TPU pods, multi-host GPU).")
    FLAGS = flags.FLAGS

    def _main(_):
        try:
            run(FLAGS.run_mode, FLAGS.gin_file, FLAGS.gin_bindings, FLAGS.gin_search_paths, FLAGS.multihost)
        except ConfigError as e:
            print(f"next_jax: {e}", file=sys.stderr)
            sys.exit(2)

    raw = sys.argv if argv is None else argv
    try:
        rewritten = rewrite_gin_flags(raw)
    except ConfigError as e:
        print(f"next_jax: {e}", file=sys.stderr)
        return 2
    app.run(_main, argv=rewritten)
    return 0


if __name__ == "__main__":
    sys.exit(main())

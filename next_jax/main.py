r"""The next_jax binary: one absl app that runs any entry function, configured by gin.

    python -m next_jax.main --gin_file=gin_configs/experiments/cpu_demo.gin \
        --gin.MODEL_DIR=\"/tmp/next_jax_run\"

Flags, as in T5X: ``--gin_file`` (repeatable; later files override earlier ones), ``--gin_bindings``
(repeatable), ``--gin.NAME=VALUE`` (rewritten to a binding ``NAME = VALUE``), ``--gin_search_paths``
(where ``include`` and relative ``--gin_file`` paths are looked up; the repository root and its
``gin_configs/`` are always searched). ``--run_mode`` defaults to the gin macro ``RUN_MODE``. A
binding gin cannot parse, one that names an unknown function or parameter, or an override of a
macro that no gin file of the run defines or reads (a typo such as ``--gin.NUM_SAMPELS=8``, which
gin alone would accept as a new, unread macro) stops the run with exit status 2 before any work,
with a message that names it (and the closest existing macro). So does a macro that only restated a
default and is gone (``--gin.DEDUP=...``, in an override or a gin file): the message names the
config field that replaced it (``REMOVED_MACROS``).

The operative config (only the values the run used) is written to ``MODEL_DIR/config.gin`` when the
entry function returns; the full parsed config is written there first, so a crashed run still
leaves a record of what it was asked to do.

A multi-process job (a TPU pod, several GPU hosts, or ``launch/tpu_run.sh --local_processes=N ...`` on
one machine) joins before anything touches a device: ``--coordinator_address=HOST:PORT
--num_processes=N --process_id=I`` (``--local_device_ids`` where one host runs several processes),
or ``--multihost`` to let JAX detect them (TPU pods, SLURM; ``launch/tpu_run.sh --tpu=...`` sets
it). ``--initialization_timeout``, ``--heartbeat_timeout`` and ``--collective_timeout`` bound every
wait on the other processes (``next_jax/distributed.py``), so one process stopping stops the job.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import io
import os
import re
import sys
import tokenize
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from next_jax import io as nj_io
from next_jax.errors import UserError, one_line
from next_jax import startup_log

# The run modes and the entry function each one calls. Entry functions take one typed config (or,
# not converted yet, keywords) bound by gin; the modules are imported lazily so `--help` stays fast.
RUN_MODES: Dict[str, str] = {
    "infer": "next_jax.infer:infer",
    "pipeline": "next_jax.pipeline:run_pipeline",
    "next": "next_jax.selftrain.loop:run_next",
    "train": "next_jax.train:train",
    "demo": "next_jax.demo.run:run_demo",
    "eval": "next_jax.checkpoint_eval:evaluate",
}

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SEARCH_PATHS = (REPO_ROOT, os.path.join(REPO_ROOT, "gin_configs"))


_MISSING_ARGUMENT = re.compile(r"^\w+\(\) (missing \d+ required|got an unexpected keyword)")


class ConfigError(UserError):
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


def parse_gin(gin_files: Sequence[str], gin_bindings: Sequence[str], search_paths: Sequence[str],
              run_mode: Optional[str] = None) -> Callable:
    """Parses gin files and bindings, registers the entry function, locks the config.

    Returns the entry function of ``run_mode`` (None: the gin macro ``RUN_MODE``). The entry is
    registered with gin before the config is locked, since gin refuses new configurables after.
    Any problem becomes a ConfigError naming the culprit, before any work starts.
    """
    import gin

    _quiet_gin_include_search()
    _quiet_checkpoint_library()
    searched = list(search_paths) + list(DEFAULT_SEARCH_PATHS)
    for path in searched:
        gin.add_config_file_search_path(path)
    _read_remote_gin_files(list(gin_files) + list(search_paths))
    for path in gin_files:
        if not _find_gin_file(path, search_paths):
            raise ConfigError(f"--gin_file={path}: no such file (searched {searched})")
    with _as_config_error():
        gin.parse_config_files_and_bindings(list(gin_files), [], finalize_config=False)
    overrides = _overridden_macros(gin_bindings)
    defined_by_files = {name for name in overrides if _macro_defined(name)}
    with _as_config_error():
        gin.parse_config_files_and_bindings([], list(gin_bindings), finalize_config=False)
    if run_mode is None:
        run_mode = _macro_value("RUN_MODE")
        if run_mode is None:
            raise ConfigError("no --run_mode given and the gin files set no RUN_MODE macro; "
                              f"choose one of {sorted(RUN_MODES)}")
    entry = resolve_entry(run_mode)
    try:
        gin.get_configurable(entry)
    except ValueError:
        gin.external_configurable(entry)
    _check_overrides(overrides, defined_by_files, *_macro_use(gin.config_str()), run_mode=run_mode)
    from next_jax import gin_types  # deferred: --help stays fast

    gin_types.check(gin.config_str(), overrides, entry)
    with _as_config_error():
        gin.finalize()  # reports %gin.REQUIRED values left unbound
    return entry


# Names gin files and commands of earlier versions used, and what they are now: a binding that
# names an old one fails (gin knows only the new) with a message that names the new binding.
RENAMED: Dict[str, str] = {
    "evaluate.evaluate": "checkpoint_eval.evaluate (from next_jax import checkpoint_eval)",
    "train.demo_repair_task": "demo_task.demo_repair_task (from next_jax.demo import task as demo_task)",
    **{old: new for old, new in (
        ("SamplingSettings", "SamplingConfig"), ("ExecutionSettings", "ExecutionConfig"),
        ("ProxySettings", "ProxyConfig"), ("EvalSettings", "EvalConfig"), ("BuildOptions", "DatasetBuildConfig"),
        ("SelectionSettings", "SelectionConfig"), ("BuildSettings", "BuildConfig"),
        ("FinetuneSettings", "FinetuneConfig"), ("CheckOptions", "CheckConfig"), ("DataSettings", "DataConfig"),
        ("BootstrapSettings", "BootstrapConfig"))},
}


# Entry functions that took their settings as keywords and now take one config object.
MOVED_INTO_CONFIGS: Dict[str, Tuple[str, str]] = {
    "run_pipeline": ("pipeline.PipelineConfig", "; the model's fields: models.ModelRef.NAME"),
    "run_next": ("loop.NextConfig", "; task files: loop.FilesConfig.NAME; the base model: base/models.ModelRef.NAME"),
    "infer": ("infer.InferConfig", "; the model's fields: models.ModelRef.NAME"),
    "train": ("train.TrainConfig", ""),
    "evaluate": ("checkpoint_eval.CheckpointEvalConfig", ""),
}


# Fields of a config that moved into one of its sub-configs: config -> field -> its new binding.
MOVED_FIELDS: Dict[str, Dict[str, str]] = {
    "TrainConfig": {
        **{f: f"inputs.DatasetConfig.{f} (train.TrainConfig.dataset_cfg)"
           for f in ("task_name", "task_feature_lengths", "batch_size", "split", "pack", "shuffle")},
        **{f"eval_{f}": f"train.TrainEvalConfig.{f} (train.TrainConfig.eval_cfg)" for f in ("split", "period", "batches")},
        **{f: f"train.LoggingConfig.{f} (train.TrainConfig.logging_cfg)" for f in ("summary_period", "peak_flops")},
    },
    "ExecutionConfig": {"test_timeout_s": "checker.CheckConfig.test_timeout_s (runs.ExecutionConfig.check)"},
}


# Macros of the run files that only restated a dataclass default, by run mode, and the binding that
# sets the value now: an override (or a gin file) that still sets one fails naming it.
_PARTITIONER = "partitioning.Partitioner.axis_sizes"
REMOVED_MACROS: Dict[str, Dict[str, str]] = {
    "next": {
        **{m: f"loop.FilesConfig.{f}" for m, f in (
            ("TEST_FILE", "test_file"), ("EXEMPLARS_FILE", "exemplars_file"), ("FEW_SHOT", "few_shot"),
            ("SEED_FILE", "seed_file"))},
        **{m: f"loop.NextConfig.{f}" for m, f in (
            ("NUM_ITERATIONS", "num_iterations"), ("PROMPT_VARIANT", "prompt_variant"),
            ("ANSWER_FORMAT", "answer_format"))},
        "BASE_CHECKPOINT": "base/models.ModelRef.checkpoint", "HARD_THRESHOLD": "settings.SelectionConfig.threshold",
        **{m: f"settings.BuildConfig.{m.lower()}" for m in ("DEDUP", "MAX_PER_PROBLEM", "ACCUMULATE", "INCLUDE_SEED")},
        **{m: f"settings.FinetuneConfig.{f}" for m, f in (
            ("FINETUNE_STEPS", "num_steps"), ("EPOCHS", "epochs"), ("MAX_STEPS", "max_steps"),
            ("FROM_PREVIOUS", "from_previous"), ("TRAIN_VARIANT", "train_variant"),
            ("CHECKPOINT_PERIOD", "checkpoint_period"))},
        **{m: f"repair.EvalConfig.{f}" for m, f in (("EVAL_VARIANTS", "variants"), ("GREEDY", "greedy"),
                                                     ("PASS_AT_KS", "ks"))},
        "WORKERS": "runs.ExecutionConfig.workers", "TEST_TIMEOUT_S": "checker.CheckConfig.test_timeout_s",
        "MESH_AXIS_SIZES": f"{_PARTITIONER} (fine-tuning, and sampling unless sampling/{_PARTITIONER} is bound)",
        "SAMPLING_MESH_AXIS_SIZES": f"sampling/{_PARTITIONER}",
    },
    "pipeline": {
        **{m: f"pipeline.PipelineConfig.{m.lower()}" for m in (
            "TASKS_FORMAT", "NUM_TASKS", "PROMPT_VARIANT", "PASS_AT_KS", "ANSWER_FORMAT", "FEW_SHOT")},
        "CHECKPOINT": "models.ModelRef.checkpoint", "MESH_AXIS_SIZES": _PARTITIONER,
    },
    "infer": {"SPLIT": "infer.InferConfig.split", "ITERATION": "infer.InferConfig.iteration",
              "PROMPT_VARIANT": "infer.InferConfig.prompt_variant", "CHECKPOINT": "models.ModelRef.checkpoint",
              "MESH_AXIS_SIZES": _PARTITIONER},
    "train": {
        "INITIAL_CHECKPOINT": "train.TrainConfig.initial_checkpoint", "RANDOM_SEED": "train.TrainConfig.seed",
        "NUM_MICROBATCHES": "train.TrainConfig.num_microbatches", "WEIGHT_DECAY": "optimizers.AdamW.weight_decay",
        "Z_LOSS": "lm.DecoderLM.z_loss", "LABEL_SMOOTHING": "lm.DecoderLM.label_smoothing",
        "CHECKPOINT_PERIOD": "checkpoints.CheckpointConfig.period",
        "CHECKPOINTS_TO_KEEP": "checkpoints.CheckpointConfig.keep",
        "SUMMARY_PERIOD": "train.LoggingConfig.summary_period", "EVAL_SPLIT": "train.TrainEvalConfig.split",
        "EVAL_BATCHES": "train.TrainEvalConfig.batches", "MESH_AXIS_SIZES": _PARTITIONER,
    },
    "demo": {"SEEDS": "run.DemoConfig.seeds"},
    "eval": {**{m: f"checkpoint_eval.CheckpointEvalConfig.{f}" for m, f in (
                ("EVAL_SPLIT", "split"), ("CHECKPOINT_STEPS", "checkpoint_steps"), ("EVAL_CHECKPOINT", "checkpoint"),
                ("EVAL_BATCH_SIZE", "batch_size"), ("EVAL_BATCHES", "eval_batches"))},
             "MESH_AXIS_SIZES": _PARTITIONER},
}


def removed_macro_hint(name: str, run_mode: Optional[str], value: Optional[str] = None) -> Optional[str]:
    """What to bind instead of the removed macro ``name`` (set to ``value``), else None."""
    modes = {mode: fields[name] for mode, fields in REMOVED_MACROS.items() if name in fields}
    if not modes:
        return None
    if run_mode in modes:
        binding = modes[run_mode]
        field = binding.split(" ", 1)[0]
        example = f" ({field} = {value.strip()})" if value is not None else ""
        return f"{name} is no longer a macro (it only restated a default): bind {binding}{example}"
    where = "; ".join(f"--run_mode={mode}: {binding}" for mode, binding in sorted(modes.items()))
    return f"{name} is no longer a macro (it only restated a default): bind {where}"


def renamed_hint(message: str) -> str:
    """What an old name or keyword in ``message`` (a gin error) is called now, else ''."""
    found = [f"{old} is now {new}" for old, new in RENAMED.items() if re.search(rf"(?<![\w]){re.escape(old)}\b", message)]
    found += [f"{fn} takes one config: bind {config}.NAME{more}" for fn, (config, more) in MOVED_INTO_CONFIGS.items()
              if re.search(rf"'(?:[\w.]+\.)?{fn}' doesn't have a parameter", message)]
    found += [f"{config}.{field} is now {new}" for config, fields in MOVED_FIELDS.items() for field, new in fields.items()
              if re.search(rf"'(?:[\w.]+\.)?{config}' doesn't have a parameter named '{field}'", message)]
    return f" (renamed: {'; '.join(found)})" if found else ""


def _check_real_model_dir(config_text: str) -> None:
    """A real-model run whose HF_CHECKPOINT_DIR lacks the files it reads stops before any work,
    naming the Hugging Face repository to download and the layout expected."""
    import gin

    from next_jax import gin_types  # deferred: --help stays fast
    from next_jax.models import hf_repos  # deferred: next_jax.models imports jax and flax; --help stays fast

    directory = _macro_value("HF_CHECKPOINT_DIR")
    if not isinstance(directory, str) or nj_io.is_remote(directory):
        return
    readers = gin_types.parameters_reading(config_text, "HF_CHECKPOINT_DIR", directory)
    tokenizer = any(r.endswith(".tokenizer_path") for r in readers)
    weights = any(not r.endswith(".tokenizer_path") for r in readers)
    shape = []
    for field in ("vocab_size", "hidden_size", "num_layers"):
        try:
            shape.append(gin.query_parameter(f"models.ModelConfig.{field}"))
        except ValueError:
            shape.append(None)
    hf_repos.require(directory, repo=hf_repos.repo_for(*shape), what="HF_CHECKPOINT_DIR", weights=weights,
                     tokenizer=tokenizer)


@contextlib.contextmanager
def _as_config_error():
    try:
        yield
    except ConfigError:
        raise
    except Exception as e:  # gin raises ValueError, SyntaxError, tokenize.TokenError, IOError, ...
        raise ConfigError(f"gin configuration error: {e}{renamed_hint(str(e))}") from None


# Macros this binary reads itself (``gin.query_parameter``), so overriding them is never a typo.
READ_BY_MAIN = frozenset({"RUN_MODE", "MODEL_DIR", "ACCEPT_IMPORT_MISMATCH"})
_MACRO_ASSIGNMENT = re.compile(r"^\s*([A-Za-z_]\w*)\s*=")


def _overridden_macros(gin_bindings: Sequence[str]) -> Dict[str, str]:
    """Macro name -> the binding that sets it, for bindings of the form ``NAME = VALUE``."""
    out = {}
    for binding in gin_bindings:
        for line in binding.splitlines():
            m = _MACRO_ASSIGNMENT.match(line)
            if m:
                out.setdefault(m.group(1), line.strip())
    return out


def _macro_defined(name: str) -> bool:
    import gin

    try:
        gin.query_parameter(f"%{name}")
    except ValueError:
        return False
    return True


def _macro_value(name: str):
    import gin

    try:
        return gin.query_parameter(f"%{name}")
    except ValueError:
        return None


def _check_overrides(overrides: Dict[str, str], defined_by_files: Set[str], defined: Set[str],
                     read: Set[str], run_mode: Optional[str] = None) -> None:
    """An override of a macro that no gin file of the run defines or reads is a typo: exit 2.

    Gin itself accepts ``NUM_SAMPELS = 8`` as a new macro that nothing reads, and the run would go
    on with the default. A removed macro (``REMOVED_MACROS``) that a gin file or an override still
    sets, and nothing reads, fails the same way, naming the binding that replaced it.
    """
    for name in sorted(defined - read - set(overrides) - READ_BY_MAIN):
        hint = removed_macro_hint(name, run_mode)
        if hint:
            raise ConfigError(f"a gin file of this run sets the macro {name}, which nothing reads: {hint}")
    for name, binding in overrides.items():
        if name in READ_BY_MAIN or name in read:
            continue
        hint = removed_macro_hint(name, run_mode, binding.split("=", 1)[1])
        if hint:
            raise ConfigError(f"binding {binding!r}: {hint}")
        if name in defined_by_files:
            continue
        candidates = sorted(((defined - set(overrides)) | defined_by_files | read | READ_BY_MAIN) - {name})
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else f"; known macros: {candidates}"
        raise ConfigError(f"binding {binding!r}: no gin file of this run defines or reads a macro "
                          f"named {name}{hint}")


def _macro_use(config_text: str) -> Tuple[Set[str], Set[str]]:
    """(macros defined, macros read) in gin config text such as ``gin.config_str()``.

    Read from tokens, so a ``%`` inside a string value is not taken for a macro reference;
    ``%gin.REQUIRED`` and other dotted names are constants, not macros.
    """
    defined, read = set(), set()
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(config_text).readline)
              if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                                tokenize.DEDENT)]
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        after = tokens[i + 2] if i + 2 < len(tokens) else None
        if tok.type == tokenize.NAME and tok.start[1] == 0 and nxt is not None and nxt.string == "=":
            defined.add(tok.string)
        if tok.string == "%" and nxt is not None and nxt.type == tokenize.NAME:
            if after is None or after.string != ".":
                read.add(nxt.string)
    return defined, read


def _quiet_gin_include_search() -> None:
    """Silences gin's package-resource probe.

    For every search path that does not hold an included file, gin's resource reader logs
    ``Path not found`` at error level although the next path finds it; a file found nowhere is
    still reported, as a ConfigError.
    """
    import logging

    root = logging.getLogger()
    if _drop_gin_path_probe not in root.filters:
        root.addFilter(_drop_gin_path_probe)


def _quiet_checkpoint_library() -> None:
    """Keeps orbax's per-save INFO lines (a dozen per checkpoint: tmp directories, renames, thread
    hand-offs) out of the run's log, where they bury the progress lines; its warnings and errors
    still show, and ``--verbosity=1`` shows everything."""
    import logging

    absl_logger = logging.getLogger("absl")
    if _drop_orbax_info not in absl_logger.filters:
        absl_logger.addFilter(_drop_orbax_info)


def _drop_orbax_info(record) -> bool:
    from absl import logging as absl_logging

    if record.levelno >= 30 or absl_logging.get_verbosity() >= 1:
        return True
    return "/orbax/" not in record.pathname.replace(os.sep, "/")


def _drop_gin_path_probe(record) -> bool:
    return not (record.pathname.replace(os.sep, "/").endswith("gin/resource_reader.py")
                and str(record.msg).startswith("Path not found"))


def _find_gin_file(path: str, search_paths: Sequence[str]) -> bool:
    if nj_io.exists(path):
        return True
    return any(nj_io.exists(nj_io.join(p, path)) for p in list(search_paths) + list(DEFAULT_SEARCH_PATHS))


def _read_remote_gin_files(paths: Sequence[str]) -> None:
    """Lets gin read ``gs://`` gin files and include paths: gin itself opens local files only."""
    import gin

    if any(nj_io.is_remote(p) for p in paths) and not _REMOTE_GIN_READER:
        gin.config.register_file_reader(lambda path: nj_io.open_file(path, "r"), nj_io.is_remote)
        _REMOTE_GIN_READER.append(True)


_REMOTE_GIN_READER: List[bool] = []


def model_dir_from_gin() -> str | None:
    import gin

    try:
        value = gin.query_parameter("%MODEL_DIR")
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def write_config(model_dir: str, text: str) -> str:
    """Writes MODEL_DIR/config.gin atomically (only process 0 writes in multi-host runs)."""
    path = nj_io.join(model_dir, "config.gin")
    nj_io.write_text(path, text)
    return path


def run(run_mode, gin_files, gin_bindings, search_paths, cluster=None):
    """Parses the configuration, calls the entry function, records the operative config.

    ``run_mode`` may be None: experiment files name their own with ``RUN_MODE = 'infer'``, so
    ``launch/tpu_run.sh --gin_file=EXPERIMENT.gin`` is a whole command. ``cluster`` (a
    ``distributed.DistributedConfig``) makes this process one of a multi-process job.
    """
    import gin

    from next_jax import distributed, run_lease  # deferred: --help stays fast
    from next_jax.models import import_checks  # deferred: next_jax.models imports jax and flax; --help stays fast

    cluster = cluster or distributed.DistributedConfig()
    try:
        distributed.initialize(cluster)
    except distributed.DistributedConfigError as e:
        raise ConfigError(str(e)) from None
    entry = parse_gin(gin_files, gin_bindings, search_paths, run_mode)
    _check_real_model_dir(gin.config_str())
    configured = gin.get_configurable(entry)
    model_dir = model_dir_from_gin()
    is_chief = True
    if cluster.enabled:
        import jax

        is_chief = jax.process_index() == 0
    # One run per MODEL_DIR: the lease is taken before anything is written there (process 0 of a
    # pod holds it for all), and given back however the run ends.
    lease, refused = None, None
    if model_dir and is_chief:
        try:
            lease = run_lease.acquire(model_dir, what="MODEL_DIR")
        except UserError as e:
            refused = e
    if cluster.enabled:  # the other processes stop with process 0 instead of waiting for it in a collective
        from next_jax import multihost as multihost_lib  # deferred: --help stays fast

        message = multihost_lib.broadcast_json(str(refused) if refused is not None else None)
        if message is not None and refused is None:
            refused = run_lease.LeaseHeldError(message)
    if refused is not None:
        raise refused
    try:
        if model_dir and is_chief:
            write_config(model_dir, gin.config_str())
        with distributed.stop_job_on_failure(cluster, passthrough=(UserError,)), \
                import_checks.accepting(_macro_value("ACCEPT_IMPORT_MISMATCH") or ()):
            try:
                result = configured()
            except TypeError as e:
                # An entry argument that no gin file or binding supplied fails at the call itself;
                # any other error comes from inside the run and keeps its traceback.
                if _MISSING_ARGUMENT.match(str(e)) and not _raised_inside(e, entry):
                    raise ConfigError(f"{e} (bind it in a gin file or with --gin.NAME=VALUE)") from None
                raise
        if model_dir and is_chief:
            write_config(model_dir, gin.operative_config_str())
    finally:
        if lease is not None:
            lease.release()
    return result


def user_message(error: UserError) -> str:
    """A user error on one line, without the call-site notes gin appends to what passes through it."""
    lines = [line.strip() for line in str(error).splitlines()
             if line.strip() and not line.strip().startswith("In call to configurable")]
    return " ".join(lines) if lines else one_line(error)


def main(argv=None) -> int:
    from absl import app, flags

    startup_log.quiet_startup()  # first: TensorFlow's native libraries and Beam print warnings as they load

    flags.DEFINE_enum(
        "run_mode", None, sorted(RUN_MODES), "Entry function to run (default: the gin macro RUN_MODE)."
    )
    flags.DEFINE_multi_string("gin_file", [], "Gin config files, parsed in order.")
    flags.DEFINE_multi_string("gin_bindings", [], "Individual gin bindings, applied after the files.")
    flags.DEFINE_list("gin_search_paths", [], "Directories searched for gin files and includes.")
    from next_jax import distributed  # deferred: --help stays fast

    distributed.define_flags(flags)
    flags.DEFINE_bool("check_config", False, "Only parse and bind the gin files and overrides (exit 0, or 2 "
                      "naming the bad binding), then exit; launch/tpu_run.sh --dry_run runs this.")
    FLAGS = flags.FLAGS

    def _main(_):
        try:
            try:
                cluster = distributed.settings_from_flags(FLAGS)
                cluster.validate()
            except distributed.DistributedConfigError as e:
                raise ConfigError(str(e)) from None
            if FLAGS.check_config:
                parse_gin(FLAGS.gin_file, FLAGS.gin_bindings, FLAGS.gin_search_paths, FLAGS.run_mode)
                print("next_jax: the gin files and bindings parse and bind")
                return
            run(FLAGS.run_mode, FLAGS.gin_file, FLAGS.gin_bindings, FLAGS.gin_search_paths, cluster)
        except UserError as e:  # wherever it was found, before or after start-up
            print(f"next_jax: {user_message(e)}", file=sys.stderr)
            sys.exit(2)
        except distributed.JoinError as e:
            print(f"next_jax: {e}", file=sys.stderr)
            sys.exit(1)

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

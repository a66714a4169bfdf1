"""The absl/gin binary and the launcher script."""

import importlib
import inspect
import os
import pathlib
import re
import shlex
import subprocess
import sys
import textwrap

import pytest

from next_jax import main as main_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_rewrite_gin_flags():
    argv = ["prog", "--gin.MODEL_DIR='/tmp/x'", "--gin_file=a.gin", "--gin.f.n=3"]
    assert main_lib.rewrite_gin_flags(argv) == [
        "prog", "--gin_bindings=MODEL_DIR = '/tmp/x'", "--gin_file=a.gin", "--gin_bindings=f.n = 3"]
    with pytest.raises(main_lib.ConfigError, match="--gin.NOVALUE"):
        main_lib.rewrite_gin_flags(["--gin.NOVALUE"])


@pytest.fixture
def entry_module(tmp_path, monkeypatch):
    """A throwaway entry function registered as a run mode, to drive main like a user would."""
    pkg = tmp_path / "demo_entry_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "entry.py").write_text(textwrap.dedent("""
        import json, os
        def helper(a, b):
            return a + b
        def go(*, model_dir, steps, label='x'):
            if label == 'bug':
                helper(1)
            with open(os.path.join(model_dir, 'out.json'), 'w') as f:
                json.dump({'steps': steps, 'label': label}, f)
            return steps
    """))
    (tmp_path / "exp.gin").write_text(textwrap.dedent("""
        from __gin__ import dynamic_registration
        from demo_entry_pkg import entry
        RUN_MODE = 'demo'
        MODEL_DIR = %gin.REQUIRED
        entry.go.model_dir = %MODEL_DIR
        entry.go.steps = 2
    """))
    return tmp_path


def _run_main(args, cwd, extra_path):
    env = dict(os.environ, PYTHONPATH=f"{extra_path}:{REPO}")
    code = textwrap.dedent("""
        import sys
        from next_jax import main
        main.RUN_MODES['demo'] = 'demo_entry_pkg.entry:go'
        sys.exit(main.main())
    """)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.heavy
def test_main_runs_entry_and_writes_operative_config(entry_module):
    model_dir = entry_module / "run"
    proc = _run_main(["--gin_file=exp.gin", f"--gin.MODEL_DIR='{model_dir}'", "--gin.entry.go.steps=5",
                      "--gin_bindings=entry.go.label = 'y'"], entry_module, entry_module)
    assert proc.returncode == 0, proc.stderr
    assert (model_dir / "out.json").read_text() == '{"steps": 5, "label": "y"}'
    config = (model_dir / "config.gin").read_text()
    assert "entry.go.steps = 5" in config
    assert "entry.go.label = 'y'" in config


@pytest.mark.heavy
@pytest.mark.parametrize(
    "flag, expected",
    [
        ("--gin.entry.go.stepz=5", "doesn't have a parameter named 'stepz'"),
        ("--gin.nothing.here=1", "nothing.here = 1"),
        ("--gin.entry.go.steps=((", "gin configuration error"),
        ("--gin.BROKEN", "malformed gin flag '--gin.BROKEN'"),
    ],
)
def test_bad_binding_exits_with_message_naming_it(entry_module, flag, expected):
    proc = _run_main(["--gin_file=exp.gin", "--gin.MODEL_DIR='/tmp/unused'", flag], entry_module, entry_module)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.heavy
@pytest.mark.parametrize("binding, new", [
    ("--gin.decoding.SamplingSettings.num_samples=8", "SamplingSettings is now SamplingConfig"),
    ("--gin_bindings=TASK_NAME = @train.demo_repair_task()", "train.demo_repair_task is now demo_task.demo_repair_task"),
    ("--gin.pipeline.run_pipeline.num_tasks=3", "run_pipeline takes one config: bind pipeline.PipelineConfig.NAME"),
])
def test_a_binding_of_an_old_name_names_the_new_one(entry_module, binding, new):
    proc = _run_main(["--gin_file=runs/pipeline.gin", "--gin.MODEL_DIR='/tmp/unused'", binding], entry_module,
                     entry_module)
    assert proc.returncode == 2 and new in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("gin_file, binding, new", [
    ("experiments/train_tiny_cpu.gin", "train.TrainConfig.eval_split = None",
     "TrainConfig.eval_split is now train.TrainEvalConfig.split"),
    ("experiments/train_tiny_cpu.gin", "train.TrainConfig.batch_size = 4",
     "TrainConfig.batch_size is now inputs.DatasetConfig.batch_size"),
    ("experiments/train_tiny_cpu.gin", "train.TrainConfig.summary_period = 1",
     "TrainConfig.summary_period is now train.LoggingConfig.summary_period"),
    ("runs/pipeline.gin", "runs.ExecutionConfig.test_timeout_s = 1.0",
     "ExecutionConfig.test_timeout_s is now checker.CheckConfig.test_timeout_s"),
])
def test_a_binding_of_a_field_now_in_a_sub_config_names_the_new_binding(gin_file, binding, new):
    import gin

    try:
        gin.clear_config()
        with pytest.raises(main_lib.ConfigError) as raised:
            main_lib.parse_gin([os.path.join(REPO, "gin_configs", gin_file)], ["MODEL_DIR = '/tmp/unused'", binding],
                               [], None)
        assert new in str(raised.value)
    finally:
        gin.clear_config()


@pytest.mark.parametrize("gin_file, run_mode, binding, new", [
    ("runs/next.gin", None, "DEDUP = 'text'", "bind settings.BuildConfig.dedup (settings.BuildConfig.dedup = 'text')"),
    ("runs/next.gin", None, "SAMPLING_MESH_AXIS_SIZES = {'model': 2}", "bind sampling/partitioning.Partitioner.axis_sizes"),
    ("runs/pipeline.gin", None, "TASKS_FORMAT = 'traced_tasks'", "bind pipeline.PipelineConfig.tasks_format"),
    ("experiments/train_tiny_cpu.gin", "train", "EVAL_SPLIT = None", "bind train.TrainEvalConfig.split"),
    ("experiments/train_tiny_cpu.gin", "eval", "EVAL_SPLIT = None", "bind checkpoint_eval.CheckpointEvalConfig.split"),
])
def test_an_override_of_a_removed_macro_names_the_field_that_replaced_it(gin_file, run_mode, binding, new):
    import gin

    try:
        gin.clear_config()
        with pytest.raises(main_lib.ConfigError, match="is no longer a macro") as raised:
            main_lib.parse_gin([os.path.join(REPO, "gin_configs", gin_file)], ["MODEL_DIR = '/tmp/unused'", binding],
                               [], run_mode)
        assert new in str(raised.value)
    finally:
        gin.clear_config()


def test_a_gin_file_that_sets_a_removed_macro_fails_naming_the_field(tmp_path):
    import gin

    (tmp_path / "old.gin").write_text("include 'runs/next.gin'\nNUM_ITERATIONS = 3\n")
    try:
        gin.clear_config()
        with pytest.raises(main_lib.ConfigError, match=r"sets the macro NUM_ITERATIONS, which nothing reads: .*"
                                                       r"bind loop.NextConfig.num_iterations"):
            main_lib.parse_gin([str(tmp_path / "old.gin")], ["MODEL_DIR = '/tmp/unused'"], [], None)
    finally:
        gin.clear_config()


def test_every_removed_macro_is_gone_from_its_run_file_and_names_a_real_field():
    """A removed macro that a run file still reads would be refused with a wrong message, and a hint
    that names a parameter the run file's configurable lacks would send the user to another error."""
    for mode, fields in main_lib.REMOVED_MACROS.items():
        run_file = "experiments/cpu_demo.gin" if mode == "demo" else f"runs/{mode}.gin"
        text = pathlib.Path(REPO, "gin_configs", run_file).read_text()
        assert [m for m in fields if re.search(rf"%{m}\b|^{m}\s*=", text, re.M)] == [], mode
        imports = {alias: f"{package}.{alias}" for package, alias in re.findall(r"^from (\S+) import (\w+)$", text, re.M)}
        for macro, binding in fields.items():
            selector, _, param = binding.split(" ")[0].split("/")[-1].rpartition(".")
            module, _, name = selector.rpartition(".")
            target = getattr(importlib.import_module(imports[module]), name)
            assert param in inspect.signature(target).parameters, (mode, macro, binding)


@pytest.mark.heavy
def test_missing_required_macro_and_missing_file(entry_module):
    proc = _run_main(["--gin_file=exp.gin"], entry_module, entry_module)
    assert proc.returncode == 2 and "MODEL_DIR" in proc.stderr
    proc = _run_main(["--gin_file=nope.gin"], entry_module, entry_module)
    assert proc.returncode == 2 and "--gin_file=nope.gin: no such file" in proc.stderr


@pytest.mark.heavy
def test_tpu_run_dry_run_targets_every_worker():
    proc = subprocess.run(
        [os.path.join(REPO, "launch", "tpu_run.sh"), "--tpu=pod-1", "--zone=us-central2-b", "--dry_run", "--sync",
         "--gin_file=gin_configs/experiments/train_tiny_cpu.gin", "--gin.MODEL_DIR='gs://b/run 1'"],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    scp, unpack, ssh = proc.stdout.strip().splitlines()
    # --sync copies an archive of the code (what git tracks or would track), never .venv.
    assert scp.startswith("gcloud compute tpus tpu-vm scp ") and "--worker=all" in scp
    assert "tar -xzf /tmp/next_jax_code.tar.gz" in unpack.replace("\\", "")
    assert "no .venv" in proc.stderr
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert "next_jax/main.py" in listed and not any(p.startswith(".venv") for p in listed)
    copied = int(re.search(r"--sync copies (\d+) files", proc.stderr).group(1))
    assert copied == sum(os.path.isfile(os.path.join(REPO, p)) for p in listed)
    assert ssh.startswith("gcloud compute tpus tpu-vm ssh pod-1 --worker=all --zone=us-central2-b")
    assert "--multihost" in ssh and "--gin_file=gin_configs/experiments/train_tiny_cpu.gin" in ssh
    # The binding, quotes and space included, reaches the remote next_jax.main unchanged.
    remote = [a for a in shlex.split(ssh) if a.startswith("--command=")][0][len("--command="):]
    assert shlex.split(remote)[-1] == "--gin.MODEL_DIR='gs://b/run 1'"


def test_tpu_run_needs_zone():
    proc = subprocess.run([os.path.join(REPO, "launch", "tpu_run.sh"), "--tpu=pod-1", "--dry_run"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--zone" in proc.stderr


def test_every_run_mode_resolves_to_an_entry_function_of_one_config_or_keywords():
    import dataclasses
    import inspect
    import typing

    for mode in main_lib.RUN_MODES:
        entry = main_lib.resolve_entry(mode)
        params = list(inspect.signature(entry).parameters.values())
        if [p.name for p in params] == ["config"]:  # one typed config tree, bound once by gin
            assert dataclasses.is_dataclass(typing.get_type_hints(entry)["config"]), mode
        else:
            assert params and all(p.kind is p.KEYWORD_ONLY for p in params), mode
    with pytest.raises(main_lib.ConfigError, match="unknown --run_mode='no_such_mode'"):
        main_lib.resolve_entry("no_such_mode")


@pytest.mark.heavy
def test_entry_argument_left_unbound_is_a_config_error(entry_module):
    (entry_module / "partial.gin").write_text(textwrap.dedent("""
        from __gin__ import dynamic_registration
        from demo_entry_pkg import entry
        RUN_MODE = 'demo'
        entry.go.model_dir = '/tmp/unused'
    """))
    proc = _run_main(["--gin_file=partial.gin"], entry_module, entry_module)
    assert proc.returncode == 2
    assert "missing 1 required keyword-only argument: 'steps'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.heavy
def test_type_error_inside_the_run_keeps_its_traceback(entry_module):
    proc = _run_main(["--gin_file=exp.gin", "--gin.MODEL_DIR='/tmp/unused'", "--gin.entry.go.label='bug'"],
                     entry_module, entry_module)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "helper() missing 1 required positional argument" in proc.stderr


@pytest.mark.heavy
def test_run_mode_whose_entry_no_gin_file_mentions_is_registered_before_the_lock(entry_module):
    (entry_module / "bare.gin").write_text("MODEL_DIR = '/tmp/unused'\n")
    proc = _run_main(["--run_mode=demo", "--gin_file=bare.gin"], entry_module, entry_module)
    assert proc.returncode == 2, proc.stderr
    assert "locked" not in proc.stderr and "Traceback" not in proc.stderr
    assert "missing 2 required keyword-only arguments: 'model_dir' and 'steps'" in proc.stderr


@pytest.mark.heavy
def test_override_of_a_macro_nothing_defines_or_reads_names_the_closest(entry_module):
    (entry_module / "label.gin").write_text(textwrap.dedent("""
        include 'exp.gin'
        entry.go.label = %LABEL
    """))
    proc = _run_main(["--gin_file=label.gin", "--gin.MODEL_DIR='/tmp/unused'", "--gin.LABLE='z'"],
                     entry_module, entry_module)
    assert proc.returncode == 2
    assert "LABLE" in proc.stderr and "did you mean LABEL?" in proc.stderr
    assert "Traceback" not in proc.stderr and not (entry_module / "run").exists()
    # A macro that a file only reads (no default) is a valid override, and so is MODEL_DIR.
    model_dir = entry_module / "run"
    proc = _run_main(["--gin_file=label.gin", f"--gin.MODEL_DIR='{model_dir}'", "--gin.LABEL='z'"],
                     entry_module, entry_module)
    assert proc.returncode == 0, proc.stderr
    assert (model_dir / "out.json").read_text() == '{"steps": 2, "label": "z"}'


@pytest.mark.heavy
def test_a_good_run_logs_nothing_at_error_level(entry_module):
    (entry_module / "sub").mkdir()
    (entry_module / "sub" / "top.gin").write_text("include 'exp.gin'\n")
    proc = _run_main(["--gin_file=sub/top.gin", f"--gin_search_paths={entry_module}",
                      f"--gin.MODEL_DIR='{entry_module / 'run'}'"], entry_module, entry_module)
    assert proc.returncode == 0, proc.stderr
    noisy = [line for line in proc.stderr.splitlines() if line[:1] in "EF" and line[1:5].isdigit()]
    assert not noisy, noisy


def test_orbax_info_lines_are_kept_out_of_the_log_but_not_its_warnings():
    import logging

    from absl import logging as absl_logging

    from next_jax import main

    main._quiet_checkpoint_library()
    absl_logger = logging.getLogger("absl")

    def record(level, path):
        return logging.LogRecord("absl", level, path, 1, "msg", None, None)

    orbax_file = "/venv/lib/python3.11/site-packages/orbax/checkpoint/checkpoint_manager.py"
    assert not absl_logger.filter(record(logging.INFO, orbax_file))
    assert absl_logger.filter(record(logging.WARNING, orbax_file))
    assert absl_logger.filter(record(logging.INFO, "/work/next_jax/progress.py"))
    old = absl_logging.get_verbosity()
    absl_logging.set_verbosity(1)
    try:
        assert absl_logger.filter(record(logging.INFO, orbax_file))
    finally:
        absl_logging.set_verbosity(old)

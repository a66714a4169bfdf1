"""Several processes, one job: next_jax run as 2 CPU processes x 2 devices on loopback (gloo
collectives, ``launch/tpu_run.sh --local_processes=2``) against the same job in 1 process x 4
devices: training, checkpoints across process counts, the pipeline, the NExT loop, and one
process killed in the middle.

Every job here is bounded (``timeout``) and its processes are stopped when a test ends. The
heavy tests are marked ``slow`` and ``multiprocess``; CI runs them with ``-m multiprocess``.
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from next_jax import local_launch
from tests.test_train_kill import _losses  # [(step, loss)] of a run's event files, in write order

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")
LAUNCH = os.path.join(REPO, "launch", "tpu_run.sh")
# Batch rows over 'data' and heads, MLP and vocabulary over 'model': the 2 processes split the batch
# (cross-process collectives for the gradients) and each splits the model over its 2 devices.
MESH = "{'data': 2, 'fsdp': 1, 'model': 2}"
TINY_MODEL = ["--gin.models.ModelConfig.hidden_size=32", "--gin.models.ModelConfig.num_layers=2",
              "--gin.models.ModelConfig.mlp_dim=64", "--gin.models.ModelConfig.head_dim=8"]


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=f"{REPO}:{TESTS}", TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    env.pop("WRITE_AUDIT_DIR", None)
    env.update(extra)
    return env


def _job(args, processes, timeout=600, **env):
    """Runs next_jax.main as ``processes`` x (4 / processes) devices; returns the CompletedProcess."""
    if processes == 1:
        cmd = [LAUNCH, *args]
        env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=4", **env)
    else:
        cmd = [LAUNCH, f"--local_processes={processes}", f"--devices_per_process={4 // processes}", *args]
        env = _env(**env)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (cmd, proc.stdout[-4000:], proc.stderr[-4000:])
    return proc


def _state(step_dir):
    """The saved train state of one checkpoint step, as host numpy arrays (whatever mesh saved it)."""
    import jax
    import orbax.checkpoint as ocp

    from next_jax import checkpoints

    path = os.path.join(step_dir, "state")
    tree = checkpoints.saved_tree(path)
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return ocp.PyTreeCheckpointer().restore(path, args=ocp.args.PyTreeRestore(restore_args=args))


def _assert_states(a, b, exact):
    import jax

    leaves_a, leaves_b = jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for (path, x), y in zip(leaves_a, leaves_b):
        if exact:
            np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))
        else:
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-6, err_msg=jax.tree_util.keystr(path))


def _resume_copy(src, dst, keep_step):
    """A copy of run ``src`` stopped after checkpoint ``keep_step``: later steps and events removed."""
    shutil.copytree(src, dst)
    for name in os.listdir(os.path.join(dst, "checkpoints")):
        if name.isdigit() and int(name) > keep_step:
            shutil.rmtree(os.path.join(dst, "checkpoints", name))
    shutil.rmtree(os.path.join(dst, "train"))


# ---------------------------------------------------------------------------------------------
# The launcher and the flags (fast).


def test_launcher_stops_every_process_when_one_fails():
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    failing = [sys.executable, "-c", "import time, sys; time.sleep(1); print('bad input'); sys.exit(3)"]
    started = time.monotonic()
    job = local_launch.LocalJob([sleeper, failing, sleeper], dict(os.environ), grace_s=5)
    status = job.wait()
    assert status == 3 and time.monotonic() - started < 30
    assert [p.returncode for p in job.procs] == [-signal.SIGTERM, 3, -signal.SIGTERM]


def test_launcher_reports_a_signal_as_128_plus_its_number():
    killed = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    job = local_launch.LocalJob([killed, [sys.executable, "-c", "pass"]], dict(os.environ), grace_s=5)
    assert job.wait() == 128 + signal.SIGKILL


def test_launcher_gives_each_process_its_devices_and_the_cpu_collectives():
    env = local_launch.process_env({"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --xla_dump_to=/x"}, 2)
    assert env["XLA_FLAGS"].split() == ["--xla_dump_to=/x", "--xla_force_host_platform_device_count=2"]
    assert env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] == "gloo" and env["JAX_PLATFORMS"] == "cpu"
    cmds = local_launch.commands(2, 4567, ["--gin_file=a.gin"], python="py")
    assert cmds[1] == ["py", "-m", "next_jax.main", "--gin_file=a.gin", "--coordinator_address=127.0.0.1:4567",
                       "--num_processes=2", "--process_id=1"]


@pytest.mark.parametrize("flags, message", [
    (["--coordinator_address=127.0.0.1:1234"], "--coordinator_address given without --num_processes and --process_id"),
    (["--num_processes=2", "--process_id=0"], "--num_processes and --process_id given without --coordinator_address"),
    (["--coordinator_address=127.0.0.1:1234", "--num_processes=2", "--process_id=2"], "--process_id=2: must be in 0..1"),
    (["--coordinator_address=localhost", "--num_processes=2", "--process_id=0"], "expected HOST:PORT"),
    (["--local_device_ids=0,1"], "--local_device_ids is only meaningful in a multi-process job"),
    (["--multihost", "--local_device_ids=0,x"], "--local_device_ids=0,x: expected a comma-separated list"),
])
def test_bad_multi_process_flags_stop_with_one_line_naming_the_flag(flags, message):
    proc = subprocess.run([sys.executable, "-m", "next_jax.main", "--gin_file=gin_configs/experiments/train_tiny_cpu.gin",
                           *flags], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("next_jax: ") and message in last and "Traceback" not in proc.stderr


@pytest.mark.heavy
def test_a_process_whose_coordinator_never_comes_gives_up_within_its_deadline():
    port = local_launch.free_port()
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "next_jax.main", "--gin_file=gin_configs/experiments/train_tiny_cpu.gin",
                           f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", "--process_id=1",
                           "--initialization_timeout=3"], cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and time.monotonic() - started < 90
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"next_jax: process 1 of 2 (coordinator 127.0.0.1:{port}) could not join the job"), last


BARRIER_DRIVER = textwrap.dedent("""
    import sys, time
    from next_jax import distributed
    from next_jax import multihost
    index, port = int(sys.argv[1]), sys.argv[2]
    distributed.initialize(distributed.DistributedConfig(
        coordinator_address="127.0.0.1:" + port, num_processes=2, process_id=index, heartbeat_timeout_s=10,
        collective_timeout_s=4))
    multihost.barrier("start")
    if index == 1:
        time.sleep(60)  # alive (heartbeats go on) but never reaches the next barrier
    multihost.barrier("after-work")
    print("passed the barrier")
""")


@pytest.mark.multiprocess
def test_a_barrier_whose_peer_hangs_stops_the_job_at_its_deadline(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(BARRIER_DRIVER)
    port = str(local_launch.free_port())
    env = local_launch.process_env(_env(), 1)
    procs = [subprocess.Popen([sys.executable, str(script), str(i), port], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True) for i in range(2)]
    try:
        out, err = procs[0].communicate(timeout=120)
        assert procs[0].returncode == 3, err[-2000:]
        assert "passed the barrier" not in out
        assert ("next_jax: process 0 of 2 waited more than 4 s at \"barrier 'after-work'\" for the other processes"
                in err), err[-2000:]
        procs[1].wait(timeout=120)  # the coordinator went with process 0: process 1 stops too
        assert procs[1].returncode != 0
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


DETECTED_DRIVER = textwrap.dedent("""
    import jax
    from next_jax import distributed
    from next_jax import multihost
    distributed.initialize(distributed.DistributedConfig(auto_detect=True, heartbeat_timeout_s=10))
    shared = multihost.broadcast_json({"from": jax.process_index()})
    multihost.barrier("done")
    print("process", jax.process_index(), "of", jax.process_count(), "got", shared["from"])
""")


@pytest.mark.multiprocess
def test_multihost_detects_a_slurm_job_from_its_environment(tmp_path):
    """--multihost (``auto_detect``) leaves the layout to JAX's cluster detection: here SLURM's."""
    script = tmp_path / "driver.py"
    script.write_text(DETECTED_DRIVER)
    job_id = str(10000 + local_launch.free_port() % 50000)  # JAX derives the coordinator port from it
    procs = []
    for i in range(2):
        env = local_launch.process_env(_env(SLURM_JOB_ID=job_id, SLURM_STEP_NODELIST="localhost", SLURM_NTASKS="2",
                                            SLURM_PROCID=str(i), SLURM_LOCALID=str(i), SLURM_STEP_NUM_NODES="1"), 1)
        procs.append(subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, start_new_session=True))
    try:
        outs = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    for i, (p, (out, err)) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, err[-2000:]
        assert f"process {i} of 2 got 0" in out


@pytest.mark.heavy
def test_dry_run_checks_the_gin_files_before_printing_commands():
    base = [LAUNCH, "--tpu=pod-1", "--zone=us-central2-b", "--dry_run",
            "--gin_file=gin_configs/experiments/train_tiny_cpu.gin"]
    proc = subprocess.run(base + ["--gin.TRAIN_STEPZ=3"], cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 2 and not proc.stdout
    assert "TRAIN_STEPZ" in proc.stderr and "did you mean TRAIN_STEPS?" in proc.stderr
    proc = subprocess.run(base + ["--gin.models.ModelConfig.hidden_sise=3"], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2 and "hidden_sise" in proc.stderr and not proc.stdout
    proc = subprocess.run([LAUNCH, "--local_processes=2", "--devices_per_process=2", "--dry_run",
                           "--gin_file=gin_configs/experiments/train_tiny_cpu.gin", "--gin.MODEL_DIR='/tmp/x'"],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all("--xla_force_host_platform_device_count=2" in line for line in lines)
    assert "--process_id=0" in lines[0] and "--process_id=1" in lines[1]


# ---------------------------------------------------------------------------------------------
# Training and checkpoints across process counts.


def _train_args(model_dir, steps=6):
    return ["--gin_file=gin_configs/experiments/train_tiny_cpu.gin", f"--gin.MODEL_DIR='{model_dir}'",
            f"--gin.TRAIN_STEPS={steps}", "--gin.checkpoints.CheckpointConfig.period=3", "--gin.BATCH_SIZE=8",
            "--gin.train.TrainEvalConfig.split=None", f"--gin.partitioning.Partitioner.axis_sizes={MESH}", *TINY_MODEL]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_training_in_two_processes_matches_one_and_checkpoints_cross_process_counts(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    _job(_train_args(two), processes=2)
    _job(_train_args(one), processes=1)
    reference = _losses(one / "train")
    assert [s for s, _ in reference] == list(range(1, 7))
    assert _losses(two / "train") == reference  # step by step, bitwise
    assert len(glob.glob(str(two / "train" / "events.out.tfevents.*"))) == 1  # only process 0 writes events
    # The parameters and moments agree to float32 rounding: gradients are summed across processes by
    # gloo in another order than across one process's devices.
    _assert_states(_state(two / "checkpoints" / "6"), _state(one / "checkpoints" / "6"), exact=False)

    # A checkpoint saved by 2 processes resumes in 1, and one saved by 1 resumes in 2: the input
    # position carries over (the same batches), and the steps after it log the same losses.
    for saved_by, resumed_in in ((two, 1), (one, 2)):
        resumed = tmp_path / f"{saved_by.name}_resumed_in_{resumed_in}"
        _resume_copy(saved_by, resumed, keep_step=3)
        _job(_train_args(resumed), processes=resumed_in)
        assert _losses(resumed / "train") == reference[3:], saved_by.name
        _assert_states(_state(resumed / "checkpoints" / "6"), _state(saved_by / "checkpoints" / "6"), exact=False)
        with open(resumed / "checkpoints" / "6" / "input" / "metadata") as f:
            assert json.load(f)["batches"] == 6

    # Resumed on the process count that saved it, the run ends bitwise where the uninterrupted one did.
    again = tmp_path / "two_resumed_in_2"
    _resume_copy(two, again, keep_step=3)
    _job(_train_args(again), processes=2)
    _assert_states(_state(again / "checkpoints" / "6"), _state(two / "checkpoints" / "6"), exact=True)


# ---------------------------------------------------------------------------------------------
# Sampling and the pipeline.


def _audit_gin(tmp_path):
    path = tmp_path / "audit.gin"
    path.write_text("import write_audit\nimport tests.selftrain.fixtures\n")
    return str(path)


def _pipeline_args(model_dir, audit_gin):
    return ["--gin_file=runs/pipeline.gin", "--gin_file=models/tiny.gin", f"--gin_file={audit_gin}",
            f"--gin.MODEL_DIR='{model_dir}'", "--gin.pipeline.PipelineConfig.tasks_format='humaneval'",
            "--gin.TASKS_FILE=None", "--gin.pipeline.PipelineConfig.num_tasks=3", "--gin.decoding.SamplingConfig.num_samples=2",
            "--gin.decoding.SamplingConfig.max_new_tokens=16", "--gin.TASK_FEATURE_LENGTHS={'inputs': 768}",
            "--gin.decoding.SamplingConfig.seed=11", f"--gin.partitioning.Partitioner.axis_sizes={MESH}",
            "--gin.decoding.SamplingConfig.batch_size=2", "--gin.pipeline.PipelineConfig.pass_at_ks=(1, 2)"]


def _records(path, kind):
    from next_jax.data.records import read_all

    return read_all(str(path), kind)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_pipeline_in_two_processes_matches_one_and_only_process_0_writes(tmp_path):
    from next_jax.data.records import Sample, Verdict

    two, one, audit = tmp_path / "two", tmp_path / "one", tmp_path / "writes"
    audit.mkdir()
    _job(_pipeline_args(two, _audit_gin(tmp_path)), processes=2, WRITE_AUDIT_DIR=str(audit))
    _job(_pipeline_args(one, _audit_gin(tmp_path)), processes=1)
    eval_dir = "iteration_0/eval"
    for name, kind in (("trace.samples.jsonl", Sample), ("trace.verdicts.jsonl", Verdict)):
        a, b = _records(two / eval_dir / name, kind), _records(one / eval_dir / name, kind)
        assert a and a == b, name
    metrics = [{k: v for k, v in json.loads((run / "metrics.json").read_text()).items()
                if k not in ("timings_s", "wall_s")} for run in (two, one)]
    assert "pass@1" in metrics[0] and metrics[0] == metrics[1]
    written = (audit / "process_0.txt").read_text().splitlines()
    assert any("trace.samples.jsonl" in p for p in written) and any("metrics.json" in p for p in written)
    assert not (audit / "process_1.txt").exists(), (audit / "process_1.txt").read_text()[:2000]


# ---------------------------------------------------------------------------------------------
# The NExT loop, and a process killed in the middle of it.


# The fixtures' tiny model with 2 KV heads, so that every sharded dimension divides the 'model' axis.
NEXT_MODEL = dict(vocab_size=264, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2, head_dim=16,
                  mlp_dim=64, max_seq_len=512)


def _model_gin(tmp_path):
    path = tmp_path / "model.gin"
    path.write_text("from __gin__ import dynamic_registration\nimport seqio\nfrom next_jax import models\n"
                    "VOCABULARY = @seqio.ByteVocabulary()\nMODEL = @models.ModelConfig()\n"
                    + "".join(f"models.ModelConfig.{k} = {v!r}\n" for k, v in NEXT_MODEL.items()))
    return str(path)


def _next_args(work, name, audit_gin):
    return ["--gin_file=runs/next.gin", f"--gin_file={_model_gin(work)}", f"--gin_file={audit_gin}",
            f"--gin.MODEL_DIR='{work / name}'", f"--gin.TRAIN_FILE='{work / 'train.jsonl'}'",
            f"--gin.DEV_FILE='{work / 'dev.jsonl'}'", f"--gin.base/models.ModelRef.checkpoint='{work / 'base'}'",
            "--gin.TASK_FEATURE_LENGTHS={'inputs': 160, 'targets': 16}", "--gin.loop.NextConfig.num_iterations=1",
            "--gin.loop.NextConfig.answer_format='test_oracle'", "--gin.loop.FilesConfig.few_shot=False",
            "--gin.settings.SelectionConfig.threshold=0.5",
            "--gin.decoding.SamplingConfig.num_samples=4", "--gin.decoding.SamplingConfig.max_new_tokens=8",
            "--gin.decoding.SamplingConfig.batch_size=8", "--gin.decoding.SamplingConfig.chunk_size=2",
            "--gin.settings.FinetuneConfig.num_steps=3", "--gin.BATCH_SIZE=8",
            "--gin.settings.FinetuneConfig.checkpoint_period=1", "--gin.WARMUP_STEPS=1",
            "--gin.repair.EvalConfig.variants=('trace',)", "--gin.repair.EvalConfig.greedy=False",
            "--gin.repair.EvalConfig.ks=(1, 2)", "--gin.runs.ExecutionConfig.workers=2",
            "--gin.checker.CheckConfig.test_timeout_s=2.0", f"--gin.partitioning.Partitioner.axis_sizes={MESH}"]


def _next_outputs(run):
    from next_jax.data.records import Sample, Verdict

    it = run / "iteration_0"
    return {
        "select": [(s.sample_id, s.text) for s in _records(it / "select" / "samples.jsonl", Sample)],
        "samples": [(s.sample_id, s.text, s.seed) for s in _records(it / "sample" / "samples.jsonl", Sample)],
        "verdicts": [(v.sample_id, v.status) for v in _records(it / "check" / "verdicts.jsonl", Verdict)],
        "b": [(s.sample_id, s.text) for s in _records(it / "build" / "b.jsonl", Sample)],
        "dev_after_finetune": [(s.sample_id, s.text) for s in
                               _records(run / "iteration_1" / "eval" / "trace.samples.jsonl", Sample)],
        "pass_at_1": json.loads((run / "summary.json").read_text())["dev_pass_at_1"],
    }


def _finetuned(run):
    steps = glob.glob(str(run / "iteration_0" / "finetune" / "**" / "checkpoints" / "3"), recursive=True)
    assert len(steps) == 1, steps
    return _state(steps[0])


@pytest.mark.slow
@pytest.mark.multiprocess
def test_next_loop_in_two_processes_matches_one_and_a_killed_process_stops_the_job(tmp_path):
    from tests.selftrain import fixtures as fx

    work = tmp_path
    fx.write_tasks(str(work / "train.jsonl"), "train", 6)
    fx.write_tasks(str(work / "dev.jsonl"), "dev", 3)
    from next_jax.models.config import ModelConfig

    fx.save_base_checkpoint(str(work / "base"), ModelConfig(**NEXT_MODEL))
    audit_gin = _audit_gin(tmp_path)

    _job(_next_args(work, "two", audit_gin), processes=2)
    _job(_next_args(work, "one", audit_gin), processes=1)
    two, one = _next_outputs(work / "two"), _next_outputs(work / "one")
    assert two["b"] and any(status == "pass" for _, status in two["verdicts"])  # not vacuous
    assert two == one
    _assert_states(_finetuned(work / "two"), _finetuned(work / "one"), exact=False)

    # Two processes started by hand (no launcher to stop the other): process 1 is SIGKILLed while
    # the loop samples; process 0 must stop by itself, promptly, saying why.
    args = _next_args(work, "killed", audit_gin)
    port = local_launch.free_port()
    env = local_launch.process_env(_env(), 2)
    logs = [open(work / f"killed_{i}.log", "w+") for i in range(2)]
    procs = [subprocess.Popen(cmd + ["--heartbeat_timeout=10"], cwd=REPO, env=env, stdout=logs[i],
                              stderr=subprocess.STDOUT, start_new_session=True)
             for i, cmd in enumerate(local_launch.commands(2, port, args))]
    try:
        marker = work / "killed" / "iteration_0" / "sample" / "manifest.json"
        deadline = time.monotonic() + 600
        while not marker.exists() and time.monotonic() < deadline and all(p.poll() is None for p in procs):
            time.sleep(0.2)
        assert marker.exists() and all(p.poll() is None for p in procs), "the job never reached sampling"
        os.kill(procs[1].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        procs[0].wait(timeout=180)
        stopped_after = time.monotonic() - killed_at
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for log in logs:
            log.close()
    log0 = (work / "killed_0.log").read_text()
    assert procs[0].returncode != 0 and stopped_after < 120, (procs[0].returncode, stopped_after, log0[-3000:])
    assert "next_jax: process 0 of 2: a collective with the other processes failed" in log0 or \
        "Terminating process because the JAX distributed service detected fatal errors" in log0, log0[-3000:]
    assert json.loads(marker.read_text())["status"] == "running"  # it stopped inside the stage

    # The rerun (the launcher, 2 processes) resumes and ends with the uninterrupted run's results.
    _job(args, processes=2)
    assert _next_outputs(work / "killed") == two
    _assert_states(_finetuned(work / "killed"), _finetuned(work / "two"), exact=True)

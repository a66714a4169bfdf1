"""Every command the documentation shows runs, in seconds, and every run mode runs through main.

Commands are read from README.md (fenced blocks and inline code), from every module docstring
under next_jax/ and from the comment headers of gin files: a line that starts with
``python -m next_jax...``, ``python launch/...``, ``.venv/bin/python ...`` or ``launch/*.sh``, with
backslash continuations joined. Usage notation is read as such: ``[...]`` is optional and left
out, ``{a,b}`` expands, ``next_jax.benchmarks.NAME`` means every benchmark. Placeholders
(``FILE.py``, ``TASKS.jsonl``, ``DIR``, dataset file names, ``/tmp/...``) become small fixtures
written here or the public datasets beside the checkout (skipped, saying so, when absent); the
flags in ``TINY`` are appended so that each command finishes in seconds, and every run of one gin
experiment gets the same MODEL_DIR, so later commands resume the first one's run (eval reads
what train wrote). A binary named in running
text without arguments must exist and be runnable (``python -m`` finds its main).

A new documented command is picked up without editing this file; if it needs a fixture or a
tiny setting, the failure names the document and line and says what to add here.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from next_jax import main as main_lib
from next_jax.data.records import RepairTask, Sample, write_records

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"  # the public datasets, where this checkout has them
TIMEOUT_S = 600

COMMAND = re.compile(r"^(python3? -m next_jax[\w.{},]*|python3? launch/\S+|\.venv/bin/python \S+|"
                     r"launch/[\w.-]+\.sh)(?=\s|$)")

# Flags appended to a binary's documented command so that it runs in seconds (later flags win).
TINY: Dict[str, List[str]] = {
    "launch/run_tests.sh": ["-q", "tests/test_build.py", "-m", ""],  # never the whole suite from inside it (the last -m wins)
    "launch/write_build.py": ["--check"],  # compares BUILD with the tree instead of rewriting it
    "next_jax.tracing.sweep": ["--limit=2", "--workers=1"],
    "next_jax.tracing": ["--workers=1"],
    "next_jax.benchmarks.tracing": ["--programs=fib20", "--baselines=bare_settrace", "--nosandbox",
                                    "--noendless", "--mbpp=/nonexistent"],
    "next_jax.benchmarks.decoding": ["--presets=XS", "--workload=smoke", "--repeats=1"],
    "next_jax.benchmarks.training": ["--presets=XS", "--dtypes=float32", "--steps=1", "--repeats=1", "--seq=16"],
    "next_jax.benchmarks.execution": ["--repeats=1", "--workers=1"],
    "next_jax.local_launch": ["--gin.TRAIN_STEPS=2", "--gin.train.TrainEvalConfig.split=None"],  # after its "--": to next_jax.main
    "next_jax.execution": ["--workers=1"],
    "next_jax.data.build": ["--limit=2", "--workers=1"],
}
# Gin macro overrides for a run of an experiment file (next_jax.main or launch/tpu_run.sh). Each is
# appended only when the experiment (with its includes) defines or reads the macro, since main
# rejects an override of any other; experiments share names (NUM_SAMPLES, BATCH_SIZE, ...).
TINY_GIN: Dict[str, str] = {
    "NUM_SAMPLES": "1", "MAX_NEW_TOKENS": "4",
    "TRAIN_STEPS": "2", "BATCH_SIZE": "2", "EVAL_PERIOD": "2", "EVAL_BATCHES": "1",
    "NUM_SEED": "8", "NUM_TRAIN": "8", "NUM_DEV": "4", "BOOTSTRAP_STEPS": "2",
    "SAMPLING_BATCH_SIZE": "4", "CONTROL": "False",
    "VARIANTS": "('trace',)",
}
# The same for fields of settings objects, appended when the run's gin files bind the object. The
# NExT loop scopes its samplers (select/, sample/, eval/), and a scoped binding beats an unscoped one.
TINY_GIN_FIELDS: Dict[str, str] = {
    **{f"{scope}decoding.SamplingConfig.{field}": value
       for scope in ("", "select/", "sample/", "eval/")
       for field, value in (("num_samples", "1"), ("max_new_tokens", "4"), ("batch_size", "4"))},
    "runs.ExecutionConfig.workers": "1", "pipeline.PipelineConfig.num_tasks": "2",
    "loop.NextConfig.num_iterations": "1", "settings.FinetuneConfig.num_steps": "2",
    "checkpoints.CheckpointConfig.period": "2",
    # The CPU demo's DemoConfig parts.
    "run.DataConfig.num_seed": "4", "run.DataConfig.num_train": "4", "run.DataConfig.num_val": "2",
    "run.DataConfig.num_test": "4", "run.DataConfig.num_baseline": "20", "run.DataConfig.workers": "1",
    "run.BootstrapConfig.steps": "1", "run.NextConfig.num_iterations": "1", "run.NextConfig.num_samples": "1",
    "run.NextConfig.finetune_steps": "1", "run.DemoConfig.sample_batch": "4", "run.DemoConfig.seeds": "(0,)",
}


@dataclasses.dataclass(frozen=True)
class DocCommand:
    where: str  # "README.md:17"
    text: str  # as documented, continuation lines joined
    bare_reference: bool = False  # named in running text without arguments


def _joined(numbered_lines):
    """(line number, command) with backslash continuations joined."""
    out, pending, start = [], "", 0
    for number, line in numbered_lines:
        stripped = line.strip()
        if pending:
            pending += " " + stripped
        elif COMMAND.match(stripped):
            pending, start = stripped, number
        else:
            continue
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
        else:
            out.append((start, pending))
            pending = ""
    if pending:
        out.append((start, pending))
    return out


def readme_commands(path: Path = REPO / "README.md") -> List[DocCommand]:
    commands, fenced, in_fence = [], [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            fenced.append((number, re.sub(r"\s+#\s.*$", "", line)))  # a trailing shell comment
            continue
        for span in re.findall(r"`([^`]+)`", line):
            if COMMAND.match(span.strip()):
                # In running text, a binary alone or with elided arguments ("--tpu=...") is a
                # reference to it, not a command to run.
                bare = len(span.split()) == (3 if span.startswith("python") else 1) or "..." in span
                commands.append(DocCommand(f"README.md:{number}", span.strip(), bare))
    commands += [DocCommand(f"README.md:{n}", c) for n, c in _joined(fenced)]
    return commands


def docstring_commands() -> List[DocCommand]:
    commands = []
    for path in sorted((REPO / "next_jax").rglob("*.py")):
        tree = ast.parse(path.read_text())
        doc = ast.get_docstring(tree, clean=False)
        if not doc:
            continue
        first = tree.body[0].lineno
        rel = path.relative_to(REPO)
        numbered = [(first + i, line) for i, line in enumerate(doc.split("\n"))]
        commands += [DocCommand(f"{rel}:{n}", c) for n, c in _joined(numbered)]
    return commands


def gin_commands() -> List[DocCommand]:
    commands = []
    for path in sorted((REPO / "gin_configs").rglob("*.gin")):
        numbered = [(n, line.lstrip("#")) for n, line in enumerate(path.read_text().splitlines(), 1)
                    if line.startswith("#")]
        commands += [DocCommand(f"{path.relative_to(REPO)}:{n}", c) for n, c in _joined(numbered)]
    return commands


def documented_commands() -> List[DocCommand]:
    # Gin headers first: an experiment's own commands (train, then eval) run in their order and
    # leave the MODEL_DIR that later mentions of the same experiment read.
    return gin_commands() + readme_commands() + docstring_commands()


def expand(text: str) -> List[str]:
    """Usage notation -> runnable command texts."""
    text = re.sub(r"\s*\[[^\[\]]*\]", "", text)  # optional parts
    text = re.sub(r"\s+\.\.\.$", "", text)
    brace = re.search(r"\{([\w,]+)\}", text)
    if brace:
        return [t for part in brace.group(1).split(",")
                for t in expand(text[: brace.start()] + part + text[brace.end():])]
    if re.search(r"next_jax\.benchmarks\.NAME\b", text):
        names = sorted(p.stem for p in (REPO / "next_jax" / "benchmarks").glob("*.py") if p.stem != "__init__")
        return [t for name in names for t in expand(text.replace("benchmarks.NAME", f"benchmarks.{name}"))]
    return [text]


# ----------------------------------------------------------------------------------------------
# Fixtures the placeholders stand for.

ADD = "def f(x):\n    y = x + 1\n    return y\n"


def _repair_tasks() -> List[RepairTask]:
    return [
        RepairTask(task_id="doc/0", source="docs", description="Add one.", buggy_code=ADD.replace("+ 1", "+ 2"),
                   entry_point="f", tests=["assert f(1) == 2"], reference_fix=ADD),
        RepairTask(task_id="doc/1", source="docs", description="Add one.", buggy_code=ADD,
                   entry_point="f", tests=["assert f(2) == 3", "assert f(0) == 1"], reference_fix=ADD),
    ]


def _write_fixtures(root: Path) -> Dict[str, str]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "program.py").write_text(ADD)
    tasks = root / "tasks.jsonl"
    write_records(str(tasks), _repair_tasks())
    samples = root / "samples.jsonl"
    write_records(str(samples), [
        Sample(task_id=t.task_id, iteration=0, sample_id=f"{t.task_id}#0", prompt_variant="trace",
               text="", rationale="", fix=ADD, logprob=0.0, model="docs", seed=0)
        for t in _repair_tasks()])
    from next_jax.tracing.traced_tasks import trace_file

    trace_file(str(tasks), str(root / "traced_fixture.jsonl"))
    return {
        "TRACED_FIXTURE": str(root / "traced_fixture.jsonl"),  # no document shows it: for run modes
        "FILE.py": str(root / "program.py"),
        "TASKS.jsonl": str(tasks),
        "SAMPLES.jsonl": str(samples),
        "TRACED.jsonl": str(root / "traced.jsonl"),
        "VERDICTS.jsonl": str(root / "verdicts.jsonl"),
        "DATA_DIR": str(root / "data_dir"),
        "DIR": str(root / "out_dir"),
        "PATH/mbpp.jsonl": str(DATA / "mbpp" / "mbpp.jsonl"),
        "mbpp.jsonl": str(DATA / "mbpp" / "mbpp.jsonl"),
        "humanevalpack_python.jsonl": str(DATA / "humanevalpack" / "humanevalpack_python.jsonl"),
        "HumanEvalPlus-v0.1.10.jsonl.gz": str(DATA / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz"),
        "MbppPlus.jsonl.gz": str(DATA / "evalplus" / "MbppPlus-prerelease-767efcc.jsonl.gz"),
    }


def _substitute(arg: str, placeholders: Dict[str, str], tmp_root: Path) -> str:
    arg = re.sub(r"(?<![\w.-])/tmp/", str(tmp_root) + "/", arg)
    for name, value in placeholders.items():  # longest first: "PATH/mbpp.jsonl" before "mbpp.jsonl"
        arg = re.sub(r"(?<![\w/.-])" + re.escape(name) + r"(?![\w.-])", value, arg)
    return arg


def _binary(argv: List[str]) -> str:
    if argv[0] == "launch/host_allocator.sh" and len(argv) > 1:  # runs the command after it
        return _binary(argv[1:])
    if argv[0].endswith(".sh"):
        return argv[0]
    return argv[2] if argv[1] == "-m" else argv[1]


def prepare(text: str, placeholders: Dict[str, str], tmp_root: Path) -> List[str]:
    """The argv that runs ``text``: fixtures in, tiny settings appended."""
    argv = shlex.split(text, comments=True)
    binary = _binary(argv)
    argv = [argv[0]] + [_substitute(a, placeholders, tmp_root) for a in argv[1:]]
    argv = [sys.executable if i < 2 and a in ("python", "python3", ".venv/bin/python") else a
            for i, a in enumerate(argv)]
    argv += TINY.get(binary, [])
    if binary in ("next_jax.main", "launch/tpu_run.sh"):
        if any(a.startswith("--tpu=") for a in argv):
            return argv + ["--dry_run"]  # no pod here: the gcloud commands are printed
        gin_files = [a.split("=", 1)[1] for a in argv if a.startswith("--gin_file=")]
        macros = set().union(*(_gin_macros(REPO / g) for g in gin_files)) if gin_files else set()
        argv += [f"--gin.{name}={value}" for name, value in TINY_GIN.items() if name in macros]
        # Comments mention objects a file does not bind (eval.gin's header shows how to bind one).
        bound = re.sub(r"#[^\n]*", "", "".join(_gin_text(REPO / g) for g in gin_files))
        argv += [f"--gin.{name}={value}" for name, value in TINY_GIN_FIELDS.items()
                 if name.split("/")[-1].rsplit(".", 1)[0] in bound]
        if gin_files:
            # One MODEL_DIR per experiment, whatever path the text shows: a later command on the same
            # experiment resumes the first one's run (train before eval; a pipeline skips done stages).
            name = os.path.splitext(os.path.basename(gin_files[-1]))[0]
            argv.append(f"--gin.MODEL_DIR='{tmp_root / name}'")
    return argv


def _gin_text(path: Path) -> str:
    """A gin file's text with the files it includes."""
    if not path.exists():
        return ""
    text = path.read_text()
    return text + "".join(_gin_text(REPO / "gin_configs" / include)
                          for include in re.findall(r"^include\s+'([^']+)'", text, re.M))


def _gin_macros(path: Path) -> set:
    """Macros a gin file and the files it includes define or read."""
    if not path.exists():
        return set()
    text = path.read_text()
    names = set(re.findall(r"^([A-Za-z_]\w*)\s*=", text, re.M)) | set(re.findall(r"%([A-Za-z_]\w*)\b(?!\.)", text))
    for include in re.findall(r"^include\s+'([^']+)'", text, re.M):
        names |= _gin_macros(REPO / "gin_configs" / include)
    return names


def _missing_data(argv: List[str]) -> Optional[str]:
    for arg in argv:
        for path in re.findall(re.escape(str(DATA)) + r"[^\s'\"]*", arg):
            if not os.path.exists(path):
                return path
    return None


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("documented_commands")
    placeholders = _write_fixtures(root / "fixtures")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("XLA_FLAGS", None)  # as a user runs them: this machine's devices, not the tests' 8 fake ones
    return root, dict(sorted(placeholders.items(), key=lambda kv: -len(kv[0]))), env


def _run(argv: List[str], env: dict, where: str, timeout: int = TIMEOUT_S):
    try:
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{where}: still running after {timeout} s: {shlex.join(argv)}\n(give it a tiny "
                    f"setting in TINY or TINY_GIN of {Path(__file__).name})")
    if proc.returncode != 0:
        pytest.fail(f"{where}: exit status {proc.returncode}: {shlex.join(argv)}\n"
                    f"--- stderr (end) ---\n{proc.stderr[-3000:]}\n--- stdout (end) ---\n{proc.stdout[-1000:]}\n"
                    f"(a placeholder without a fixture, or a binary that needs a tiny setting: add it "
                    f"in {Path(__file__).name})")
    return proc


def _unique(commands):
    """One run per distinct command text; the others it stands for are named in ``where``."""
    first: Dict[str, DocCommand] = {}
    for command in commands:
        for text in expand(command.text):
            seen = first.get(text)
            if seen is None:
                first[text] = command
            elif command.where not in seen.where:
                first[text] = dataclasses.replace(seen, where=f"{seen.where}, {command.where}")
    return [(command, text) for text, command in first.items()]


COMMANDS = _unique(documented_commands())


def test_the_documentation_shows_commands():
    wheres = {w.split(":")[0] for c, _ in COMMANDS for w in c.where.split(", ")}
    assert "README.md" in wheres and "next_jax/main.py" in wheres, sorted(wheres)


@pytest.mark.heavy
@pytest.mark.parametrize("command, text", COMMANDS, ids=[f"{c.where.split(', ')[0]} {t[:60]}" for c, t in COMMANDS])
def test_documented_command_runs(command: DocCommand, text: str, workspace):
    root, placeholders, env = workspace
    if command.bare_reference:
        binary = _binary(shlex.split(text))
        if binary.endswith((".sh", ".py")):
            assert (REPO / binary).exists(), f"{command.where}: {binary} does not exist"
        else:
            spec = importlib.util.find_spec(binary)
            assert spec is not None, f"{command.where}: no module {binary}"
            main = binary if spec.submodule_search_locations is None else binary + ".__main__"
            source = Path(importlib.util.find_spec(main).origin).read_text()
            assert "__main__" in source or main.endswith("__main__"), f"{command.where}: {binary} is no binary"
        return
    argv = prepare(text, placeholders, root / "tmp")
    missing = _missing_data(argv)
    if missing:
        pytest.skip(f"{command.where}: dataset {missing} is not in this checkout (README.md, section Data)")
    proc = _run(argv, env, command.where)
    if _binary(shlex.split(text)) in ("next_jax.main", "launch/tpu_run.sh"):
        _assert_quiet(proc, command.where)


def _assert_quiet(proc, where: str) -> None:
    """A good run logs nothing at error level (absl's E/F lines), so a newcomer sees no failure."""
    noisy = [line for line in proc.stderr.splitlines() if re.match(r"^[EF]\d{4} ", line)]
    assert not noisy, f"{where}: error-level log lines on a good run: {noisy[:5]}"


# ----------------------------------------------------------------------------------------------
# Every run mode, through next_jax.main, with a tiny configuration.

INFER_TASK = '''
from next_jax import tasks


def register(*, vocabulary, path):
    tasks.register_repair_task("doc_infer", split_files={"test": path}, vocabulary=vocabulary,
                               variant="no_trace")
    return "doc_infer"
'''


def _infer_args(root: Path, placeholders) -> List[str]:
    (root / "doc_infer_task.py").write_text(INFER_TASK)
    (root / "infer_tiny.gin").write_text(textwrap.dedent(f"""
        from __gin__ import dynamic_registration
        import doc_infer_task
        from next_jax import decoding
        include 'runs/infer.gin'
        include 'models/tiny.gin'
        TASK_NAME = @doc_infer_task.register()
        doc_infer_task.register.vocabulary = %VOCABULARY
        doc_infer_task.register.path = '{placeholders["TASKS.jsonl"]}'
        TASK_FEATURE_LENGTHS = {{'inputs': 128}}
        decoding.SamplingConfig.max_new_tokens = 4
        decoding.SamplingConfig.num_samples = 1
        decoding.SamplingConfig.seed = 1
    """))
    return ["--run_mode=infer", f"--gin_file={root / 'infer_tiny.gin'}", f"--gin.MODEL_DIR='{root / 'infer_run'}'"]


def _pipeline_args(root: Path, placeholders) -> List[str]:
    (root / "pipeline_tiny.gin").write_text(textwrap.dedent(f"""
        include 'runs/pipeline.gin'
        include 'models/tiny.gin'
        pipeline.PipelineConfig.tasks_format = 'repair_tasks'
        TASKS_FILE = '{placeholders["TASKS.jsonl"]}'
        TASK_FEATURE_LENGTHS = {{'inputs': 256}}
        decoding.SamplingConfig.num_samples = 1
        decoding.SamplingConfig.max_new_tokens = 4
        runs.ExecutionConfig.workers = 1
    """))
    return ["--run_mode=pipeline", f"--gin_file={root / 'pipeline_tiny.gin'}",
            f"--gin.MODEL_DIR='{root / 'pipeline_run'}'"]


def _next_args(root: Path, placeholders) -> List[str]:
    traced = placeholders["TRACED_FIXTURE"]
    (root / "next_tiny.gin").write_text(textwrap.dedent(f"""
        include 'runs/next.gin'
        include 'models/tiny.gin'
        TRAIN_FILE = '{traced}'
        DEV_FILE = '{traced}'
        TASK_FEATURE_LENGTHS = {{'inputs': 256, 'targets': 16}}
        loop.NextConfig.num_iterations = 1
        settings.SelectionConfig.threshold = None
        loop.FilesConfig.few_shot = False
        decoding.SamplingConfig.max_new_tokens = 4
        decoding.SamplingConfig.batch_size = 2
        select/decoding.SamplingConfig.num_samples = 1
        sample/decoding.SamplingConfig.num_samples = 1
        eval/decoding.SamplingConfig.num_samples = 1
        settings.FinetuneConfig.num_steps = 1
        MIN_STEPS = 1
        BATCH_SIZE = 2
        repair.EvalConfig.variants = ('trace',)
        repair.EvalConfig.greedy = False
        repair.EvalConfig.ks = (1,)
        runs.ExecutionConfig.workers = 1
    """))
    return ["--run_mode=next", f"--gin_file={root / 'next_tiny.gin'}", f"--gin.MODEL_DIR='{root / 'next_run'}'"]


# Run mode -> (argv for next_jax.main given a scratch directory and the fixtures, output it must write).
# A run mode without an entry must be run by a documented command.
RUN_MODE_CONFIGS = {
    "infer": (_infer_args, "infer_run/iteration_0"),
    "pipeline": (_pipeline_args, "pipeline_run/metrics.json"),
    "next": (_next_args, "next_run/summary.json"),
}


def _documented_run_modes() -> set:
    modes = set()
    for _, text in COMMANDS:
        match = re.search(r"--run_mode=(\w+)", text)
        if match:
            modes.add(match.group(1))
        for gin_file in re.findall(r"--gin_file=(\S+)", text):
            path = REPO / gin_file
            if path.exists():
                found = re.search(r"^RUN_MODE\s*=\s*'(\w+)'", path.read_text(), re.M)
                if found and not match:
                    modes.add(found.group(1))
    return modes


@pytest.mark.heavy
@pytest.mark.parametrize("mode", sorted(main_lib.RUN_MODES))
def test_every_run_mode_runs_through_main(mode, workspace):
    root, placeholders, env = workspace
    if mode not in RUN_MODE_CONFIGS:
        assert mode in _documented_run_modes(), (
            f"run mode {mode!r} is in no documented command and has no tiny configuration: add one to "
            f"RUN_MODE_CONFIGS in {Path(__file__).name}")
        return  # test_documented_command_runs runs it
    make_args, output = RUN_MODE_CONFIGS[mode]
    scratch = root / f"mode_{mode}"
    scratch.mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "next_jax.main", *make_args(scratch, placeholders)]
    env = dict(env, PYTHONPATH=os.pathsep.join([str(scratch), env["PYTHONPATH"]]))
    proc = _run(argv, env, f"run mode {mode}")
    assert (scratch / output).exists(), proc.stderr[-2000:]
    _assert_quiet(proc, f"run mode {mode}")


def test_extraction_reads_usage_notation(tmp_path):
    assert expand("python -m next_jax.x --a=1 [--b N] [--c] ...") == ["python -m next_jax.x --a=1"]
    assert expand("python -m next_jax.benchmarks.{tracing,decoding}") == [
        "python -m next_jax.benchmarks.tracing", "python -m next_jax.benchmarks.decoding"]
    lines = [(1, "python -m next_jax.main --a=1 \\"), (2, "    --b=2"), (3, "not a command"),
             (4, "launch/tpu_run.sh --gin_file=x.gin")]
    assert _joined(lines) == [(1, "python -m next_jax.main --a=1 --b=2"), (4, "launch/tpu_run.sh --gin_file=x.gin")]
    ph = {"PATH/mbpp.jsonl": "/data/m.jsonl", "mbpp.jsonl": "/data/m.jsonl", "DIR": "/out"}
    argv = prepare("python -m next_jax.data.build --out_dir=DIR --mbpp=mbpp.jsonl --x=/tmp/run", ph, Path("/tmp/t"))
    assert argv[1:] == ["-m", "next_jax.data.build", "--out_dir=/out", "--mbpp=/data/m.jsonl", "--x=/tmp/t/run",
                        *TINY["next_jax.data.build"]]
    argv = prepare('launch/tpu_run.sh --gin_file=gin_configs/runs/infer.gin --gin.MODEL_DIR=\\"/tmp/a\\"',
                   ph, Path("/r"))
    assert argv[2] == '--gin.MODEL_DIR="/r/a"' and argv[-1] == "--gin.MODEL_DIR='/r/infer'"
    assert "--gin.decoding.SamplingConfig.num_samples=1" in argv and "--gin.TRAIN_STEPS=2" not in argv
    assert "--gin.runs.ExecutionConfig.workers=1" not in argv  # infer.gin binds no sandbox
    assert "--dry_run" in prepare("launch/tpu_run.sh --tpu=p --zone=z --gin_file=...", ph, Path("/r"))
    readme = tmp_path / "README.md"
    readme.write_text("Run `launch/tpu_run.sh --tpu=...` or `python -m next_jax.tracing`, or\n"
                      "`python -m next_jax.tracing --program=FILE.py`:\n```bash\n"
                      "launch/tpu_run.sh --tpu=p --gin_file=...  # on a pod\n```\n")
    assert [(c.where, c.text, c.bare_reference) for c in readme_commands(readme)] == [
        ("README.md:1", "launch/tpu_run.sh --tpu=...", True), ("README.md:1", "python -m next_jax.tracing", True),
        ("README.md:2", "python -m next_jax.tracing --program=FILE.py", False),
        ("README.md:4", "launch/tpu_run.sh --tpu=p --gin_file=...", False)]

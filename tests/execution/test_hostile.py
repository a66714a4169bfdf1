"""The hostile corpus (tests/execution/hostile/): every program gets exactly the verdict it declares.

One Checker run over the whole corpus (two workers), then: each verdict matches its header, no
process with a sandbox uid is alive, and no sandbox working directory is left in /tmp.
"""

import glob
import json
import os
import re
import time

import pytest

from next_jax.data.records import RepairTask, Sample
from next_jax.execution.checker import Checker, CheckConfig
from tests.execution.sandbox_targets import sandbox_processes

HERE = os.path.join(os.path.dirname(__file__), "hostile")
HEADER = re.compile(r"^# (task|expect|threat): (.*)$", re.M)


def load_corpus():
    with open(os.path.join(HERE, "tasks.json")) as f:
        specs = json.load(f)
    tasks = {
        name: RepairTask(task_id=name, source="hostile", description=spec.get("description", ""),
                         buggy_code=spec.get("buggy_code", ""),
                         entry_point=spec["entry_point"], tests=spec["tests"],
                         setup_code=spec.get("setup_code", ""),
                         reference_fix=spec.get("reference_fix"))
        for name, spec in specs.items()
    }
    programs = []
    for path in sorted(glob.glob(os.path.join(HERE, "*.py"))):
        with open(path) as f:
            source = f.read()
        header = dict(HEADER.findall(source))
        assert {"task", "expect", "threat"} <= header.keys(), f"{path}: header incomplete"
        assert header["task"] in tasks, f"{path}: unknown task {header['task']}"
        programs.append((os.path.basename(path), header, source))
    return tasks, programs


@pytest.fixture(scope="module")
def corpus_verdicts():
    tasks, programs = load_corpus()
    samples = [Sample(task_id=h["task"], iteration=0, sample_id=name, prompt_variant="no_trace",
                      text="", rationale="", fix=src) for name, h, src in programs]
    with Checker(workers=2, options=CheckConfig(test_timeout_s=5.0, memory_bytes=256 << 20),
                 preload=["numpy"]) as checker:
        verdicts = list(checker.check(tasks, samples))
        scratch = checker.pool.scratch_dirs
    return programs, verdicts, scratch


def test_corpus_is_big_enough_and_covers_pass_cases():
    _, programs = load_corpus()
    expects = [h["expect"] for _, h, _ in programs]
    assert len(programs) >= 40
    assert expects.count("pass") >= 10  # no-false-fail cases
    assert {"fail", "error", "timeout"} <= set(expects)


def test_every_program_gets_its_declared_verdict(corpus_verdicts):
    programs, verdicts, _ = corpus_verdicts
    # "a|b": either verdict (an attack whose speed decides which limit stops it first)
    wrong = [f"{name}: expected {h['expect']}, got {v.status} ({v.detail[:300]})"
             for (name, h, _), v in zip(programs, verdicts)
             if v.status not in h["expect"].split("|")]
    assert not wrong, "\n".join(wrong)


def test_no_hostile_program_passes_unless_declared(corpus_verdicts):
    programs, verdicts, _ = corpus_verdicts
    false_passes = [name for (name, h, _), v in zip(programs, verdicts)
                    if v.status == "pass" and h["expect"] != "pass"]
    assert not false_passes


def test_nothing_survives_the_corpus(corpus_verdicts):
    _, _, scratch = corpus_verdicts
    deadline = time.monotonic() + 20
    while sandbox_processes() and time.monotonic() < deadline:  # the last kills take moments
        time.sleep(0.05)
    assert sandbox_processes() == []
    assert scratch and not any(os.path.exists(d) for d in scratch)

"""Stage manifests: run once, skip when done, resume when unfinished, refuse a changed setting."""

import json

import pytest

from next_jax.selftrain import stages


def _stage(tmp_path, **settings):
    return stages.Stage(name="iteration_0/sample", directory=str(tmp_path / "iteration_0" / "sample"),
                        settings={"sampling": {"temperature": 0.8, "num_samples": 4}, **settings},
                        inputs={"train": "sha256:abc"})


def test_runs_once_then_skips_with_the_recorded_result(tmp_path):
    runner, calls = stages.StageRunner(), []
    fn = lambda: calls.append(1) or {"samples": 12}  # noqa: E731
    assert runner.run(_stage(tmp_path), fn) == {"samples": 12}
    assert runner.run(_stage(tmp_path), fn) == {"samples": 12}
    assert len(calls) == 1
    manifest = json.loads((tmp_path / "iteration_0" / "sample" / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["result"] == {"samples": 12}
    assert manifest["settings"]["sampling"]["num_samples"] == 4 and manifest["wall_s"] >= 0


def test_an_interrupted_stage_runs_again(tmp_path):
    def killed():
        raise KeyboardInterrupt  # stands in for a kill between the two manifest writes

    with pytest.raises(KeyboardInterrupt):
        stages.StageRunner().run(_stage(tmp_path), killed)
    manifest = json.loads((tmp_path / "iteration_0" / "sample" / "manifest.json").read_text())
    assert manifest["status"] == "running"
    assert stages.StageRunner().run(_stage(tmp_path), lambda: {"ok": True}) == {"ok": True}
    manifest = json.loads((tmp_path / "iteration_0" / "sample" / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["attempts"] == 2


@pytest.mark.parametrize("finished", [True, False])
def test_a_changed_setting_is_an_error_that_names_it(tmp_path, finished):
    stage = _stage(tmp_path)
    if finished:
        stages.StageRunner().run(stage, lambda: {})
    else:
        with pytest.raises(RuntimeError):
            stages.StageRunner().run(stage, lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    changed = stages.Stage(name=stage.name, directory=stage.directory,
                           settings={"sampling": {"temperature": 0.7, "num_samples": 4}}, inputs=stage.inputs)
    with pytest.raises(stages.SettingsChangedError, match=r"sampling\.temperature: 0\.8 -> 0\.7"):
        stages.StageRunner().run(changed, lambda: {})
    other_input = stages.Stage(name=stage.name, directory=stage.directory, settings=stage.settings,
                               inputs={"train": "sha256:def"})
    with pytest.raises(stages.SettingsChangedError, match=r"inputs\.train"):
        stages.StageRunner().run(other_input, lambda: {})


def test_settings_are_compared_in_their_json_form(tmp_path):
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class S:
        ks: tuple = (1, 5)
        inner: dict = dataclasses.field(default_factory=lambda: {"a": None})

    stage = stages.Stage(name="s", directory=str(tmp_path / "s"), settings={"x": S()})
    stages.StageRunner().run(stage, lambda: {"n": 1})
    again = stages.Stage(name="s", directory=str(tmp_path / "s"), settings={"x": S()})
    assert stages.StageRunner().run(again, lambda: {"n": 2}) == {"n": 1}
    assert stage.key == again.key and stage.key.startswith("stage:")


def test_file_fingerprint_follows_content(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("x\n")
    first = stages.file_fingerprint(str(path))
    path.write_text("y\n")
    assert stages.file_fingerprint(str(path)) != first


def test_broadcast_is_the_identity_on_one_process():
    from next_jax import multihost

    assert multihost.broadcast_json({"a": [1, 2]}) == {"a": [1, 2]}
    multihost.barrier("single")


def test_objects_are_recorded_by_type_not_address():
    import seqio

    first = stages.jsonable({"vocabulary": seqio.ByteVocabulary()})
    assert first == stages.jsonable({"vocabulary": seqio.ByteVocabulary()})
    assert first["vocabulary"]["type"].endswith("ByteVocabulary") and first["vocabulary"]["vocab_size"] == 259


def test_other_processes_follow_process_0_and_never_write(tmp_path, monkeypatch):
    """A non-chief process takes process 0's decision and result (here: process 0 says 'run' and
    then reports its result); it runs collective stages itself, other stages not at all, and it
    writes no manifest, whatever its own disk holds."""
    from next_jax import multihost

    told = [{"action": "run", "attempt": 1}, {"samples": 7}]
    monkeypatch.setattr(multihost, "is_chief", lambda: False)
    monkeypatch.setattr(multihost, "broadcast_json", lambda value, what="": told.pop(0))
    calls = []
    stage = _stage(tmp_path)
    assert stages.StageRunner().run(stage, lambda: calls.append("collective") or {"ignored": 1},
                                    collective=True) == {"samples": 7}
    told[:] = [{"action": "run", "attempt": 1}, {"passed": 3}]
    assert stages.StageRunner().run(stage, lambda: calls.append("chief only"), collective=False) == {"passed": 3}
    assert calls == ["collective"] and not (tmp_path / "iteration_0").exists()
    told[:] = [{"action": "error", "message": "stage x: setting y changed"}]
    with pytest.raises(stages.SettingsChangedError, match="setting y changed"):
        stages.StageRunner().run(stage, lambda: {})


def test_a_setting_the_older_code_did_not_have_is_not_a_change(tmp_path):
    stage = _stage(tmp_path)
    stages.StageRunner().run(stage, lambda: {"n": 1})
    upgraded = stages.Stage(name=stage.name, directory=stage.directory, inputs=stage.inputs,
                            settings={"sampling": {"temperature": 0.8, "num_samples": 4, "new_knob": "default"}})
    assert stages.StageRunner().run(upgraded, lambda: {"n": 2}) == {"n": 1}


def test_the_loop_is_a_table_of_stages_each_after_the_stages_it_reads():
    from next_jax.selftrain import loop, table

    produced = {"model"}  # the iteration's model: the base model, then each fine-tune's
    for name, upstream in table.STAGE_GRAPH:
        assert set(upstream) <= produced, f"{name} reads {set(upstream) - produced} before it is made"
        produced.add(name)
    assert list(loop.STAGES) == ["select", "eval", "test", "sample", "check", "build", "finetune"]
    assert list(table.STAGE_NAMES) == list(loop.STAGES)


def test_run_iteration_runs_stages_in_table_order_on_their_upstream_outputs():
    from next_jax.selftrain import table

    calls = []

    def stage(name):
        def run(ctx, runner, i, up):
            calls.append((name, sorted(up)))
            return {"model": f"tuned-{i}"} if name == "finetune" else name
        return table.StageImpl(run, report=lambda out: {name: out})

    # Given out of order and without select/test: the table's order decides, absent stages are skipped.
    impls = {name: stage(name) for name in ("finetune", "build", "check", "sample", "eval")}
    outputs = {"model": "base", "select": "all"}
    row = table.run_iteration(impls, None, None, 0, outputs)
    assert [c[0] for c in calls] == ["eval", "sample", "check", "build", "finetune"]
    assert calls[-1] == ("finetune", ["build", "model"])
    assert outputs["model"] == "tuned-0" and row["check"] == "check"
    with pytest.raises(ValueError, match="needs the outputs of \\['select'\\]"):
        table.run_iteration(impls, None, None, 1, {"model": "base"})
    with pytest.raises(ValueError, match="not stages of the table"):
        table.run_iteration({"polish": stage("polish")}, None, None, 0, {"model": "base"})

"""Stages with manifests: run once, skip when done with the same settings, refuse a silent change.

Every stage of the loop (select, sample, check, build, finetune, eval) has a directory with a
``manifest.json``: its settings, a fingerprint of each input (a file's sha256, or the key of the
stage that produced it), ``status`` (``running`` until the stage's outputs are complete, then
``done``), its result (counts, metrics) and its wall time. Running a stage:

- no manifest: write one (``running``), run, write it again (``done``);
- a manifest with the same settings and inputs: ``done`` is skipped (its recorded result is
  returned); ``running`` means an earlier run was killed inside the stage, so the stage runs again
  and resumes from whatever its own outputs say is finished (sampling and checking chunks, the
  fine-tune's checkpoints);
- a manifest with other settings or inputs: an error that names each changed setting, because
  mixing outputs of two configurations under one MODEL_DIR silently is how stale data gets used.

Only process 0 reads and writes manifests; the others receive its decision (skip, run, or the
error) and its result. ``collective`` stages (sampling and fine-tuning, which run SPMD over all
hosts) run on every process; the rest run on process 0 while the others wait.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from typing import Any, Callable, Dict, Mapping, Optional

from absl import logging

from next_jax import io as nj_io
from next_jax.errors import UserValueError
from next_jax import multihost

MANIFEST = "manifest.json"


class SettingsChangedError(UserValueError):
    """A stage under this MODEL_DIR was started with other settings or inputs."""


def jsonable(value: Any) -> Any:
    """The JSON form of a settings value, as it reads back from a manifest (tuples become lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    text = repr(value)
    if " at 0x" not in text:
        return text
    # An object without a value repr (a vocabulary, a function): its type and the few attributes
    # that say which one it is, never its address, which changes from run to run.
    kind = type(value)
    out = {"type": f"{kind.__module__}.{getattr(value, '__qualname__', kind.__qualname__)}"}
    for name in ("vocab_size", "tokenizer_path", "sentencepiece_model_file", "name"):
        attr = getattr(value, name, None)
        if isinstance(attr, (int, str)):
            out[name] = attr
    return out


def file_fingerprint(path: str) -> str:
    """sha256 of a file's bytes (the identity of an input such as a task file)."""
    digest = hashlib.sha256()
    with nj_io.open_file(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def input_fingerprint(path: Optional[str]) -> Optional[str]:
    """``file_fingerprint`` computed by process 0 and shared with the others (None for None)."""
    if path is None:
        return None
    return multihost.broadcast_json(file_fingerprint(path) if multihost.is_chief() else None)


def _flatten(value: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else key))
        return out or {prefix: {}}
    return {prefix: value}


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list:
    """['name: old -> new', ...] for every leaf both have and that differs (nested keys joined
    with '.'). A leaf only one side has is a setting one version of the code did not know (e.g. a
    new ModelConfig field with its default), not a changed setting, so upgrading next_jax does not
    invalidate a run; such leaves are logged."""
    a, b = _flatten(jsonable(old)), _flatten(jsonable(new))
    one_sided = sorted(set(a) ^ set(b))
    if one_sided:
        logging.info("settings known to only one of the manifest and this run (not compared): %s", one_sided)
    return [f"{key}: {a[key]!r} -> {b[key]!r}" for key in sorted(set(a) & set(b)) if a[key] != b[key]]


@dataclasses.dataclass
class Stage:
    """One stage's identity: where it writes, what it was asked to do, and from what."""

    name: str  # e.g. 'iteration_1/sample', shown in logs and errors
    directory: str
    settings: Dict[str, Any]
    inputs: Dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.settings = jsonable(self.settings)
        self.inputs = jsonable(self.inputs)

    @property
    def key(self) -> str:
        """A digest of settings and inputs: what later stages record as their input."""
        text = json.dumps({"settings": self.settings, "inputs": self.inputs}, sort_keys=True)
        return "stage:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    @property
    def manifest_path(self) -> str:
        return nj_io.join(self.directory, MANIFEST)


def read_manifest(directory: str) -> Optional[dict]:
    path = nj_io.join(directory, MANIFEST)
    if not nj_io.exists(path):
        return None
    return json.loads(nj_io.read_text(path))


def _write_manifest(stage: Stage, status: str, **extra) -> None:
    manifest = dict(stage=stage.name, status=status, key=stage.key, settings=stage.settings,
                    inputs=stage.inputs, **extra)
    nj_io.write_text(stage.manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _decide(stage: Stage) -> dict:
    manifest = read_manifest(stage.directory)
    if manifest is None:
        return {"action": "run", "attempt": 1}
    changed = differences({"settings": manifest.get("settings"), "inputs": manifest.get("inputs")},
                          {"settings": stage.settings, "inputs": stage.inputs})
    if changed:
        return {"action": "error", "message": (
            f"{stage.manifest_path}: stage {stage.name} was started with other settings or inputs: "
            f"{'; '.join(changed)}. Use another MODEL_DIR, restore the setting, or remove "
            f"{stage.directory} (and the stages after it) to redo it.")}
    if manifest.get("status") == "done":
        return {"action": "skip", "result": manifest.get("result"), "wall_s": manifest.get("wall_s")}
    return {"action": "run", "attempt": int(manifest.get("attempts", 1)) + 1}


class StageRunner:
    """Runs stages in order, recording each one's wall time (``timings``) for the report."""

    def __init__(self):
        self.timings: Dict[str, float] = {}

    def run(self, stage: Stage, fn: Callable[[], Any], *, collective: bool = False) -> Any:
        """Runs ``fn`` unless the stage is done; returns its JSON result (the recorded one on skip)."""
        decision = multihost.broadcast_json(_decide(stage) if multihost.is_chief() else None,
                                            what=f"whether to run stage {stage.name}")
        if decision["action"] == "error":
            raise SettingsChangedError(decision["message"])
        if decision["action"] == "skip":
            logging.info("stage %s: done earlier with the same settings, skipping", stage.name)
            self.timings[stage.name] = float(decision.get("wall_s") or 0.0)
            return decision["result"]
        if decision["attempt"] > 1:
            logging.info("stage %s: resuming an unfinished run (attempt %d)", stage.name, decision["attempt"])
        else:
            logging.info("stage %s: running -> %s", stage.name, stage.directory)
        started = time.monotonic()
        if multihost.is_chief():
            nj_io.makedirs(stage.directory)
            _write_manifest(stage, "running", attempts=decision["attempt"])
        multihost.barrier(f"stage-start:{stage.name}")
        result = None
        if collective or multihost.is_chief():
            result = jsonable(fn())
        result = multihost.broadcast_json(result, what=f"the result of stage {stage.name}")
        wall = time.monotonic() - started
        if multihost.is_chief():
            _write_manifest(stage, "done", attempts=decision["attempt"], result=result, wall_s=round(wall, 3))
        multihost.barrier(f"stage-done:{stage.name}")
        self.timings[stage.name] = wall
        return result

"""A TFDS builder over a dataset built by ``next_jax.data.build`` (local files only).

    from next_jax.data import tfds_builder
    ds = tfds_builder.load("/data/hefix_plus", split="test")          # a tf.data.Dataset
    # or, with the builder registered by importing this module:
    tfds.load("next_repair/hefix_plus", split="test", data_dir=...,
              download_and_prepare_kwargs={"download_config":
                  tfds.download.DownloadConfig(manual_dir="/data/hefix_plus")})

The built shard files are TFDS's *manual* source: nothing is downloaded. One builder config per
dataset (``hefix_plus``, ``mbpp_r``); the splits are the build's. Every TracedTask field is a
feature (``meta`` as JSON text), so ``tfds.load`` gives the same records the JSON Lines hold.
``load`` prepares into ``<built_dir>/tfds`` by default, beside the files it was made from, so two
builds never share a prepared copy.
"""

from __future__ import annotations

import json
from typing import Optional

import numpy as np
import tensorflow_datasets as tfds

from next_jax import io as nj_io
from next_jax.data.layout import read_stats, split_files
from next_jax.data.records import TracedTask, read_records

NAME = "next_repair"
TEXT_FIELDS = ("task_id", "source", "description", "buggy_code", "entry_point", "setup_code",
               "reference_fix")



class NextRepair(tfds.core.GeneratorBasedBuilder):
    """NExT repair tasks (TracedTask records) from a local build directory."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "TracedTask records of next_jax.data.build."}
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="hefix_plus", description="HeFix+ (evaluation)"),
                       tfds.core.BuilderConfig(name="mbpp_r", description="MBPP-R (train / dev)")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Build the dataset with `python -m next_jax.data.build --dataset=NAME --out_dir=DIR` and "
        "pass DIR as the manual_dir.")

    def _info(self) -> tfds.core.DatasetInfo:
        features = {name: tfds.features.Text() for name in TEXT_FIELDS}
        features.update(
            tests=tfds.features.Sequence(tfds.features.Text()),
            eval_tests=tfds.features.Sequence(tfds.features.Text()),
            meta=tfds.features.Text(),
            traces=tfds.features.Sequence({
                "test": tfds.features.Text(), "traced_code": tfds.features.Text(),
                "outcome": tfds.features.Text(),
                "truncated": tfds.features.Scalar(dtype=np.bool_)}),
        )
        return tfds.core.DatasetInfo(builder=self, description=self.__doc__,
                                     features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        built_dir = str(dl_manager.manual_dir)
        stats = read_stats(built_dir)
        if stats["dataset"] != self.builder_config.name:
            raise ValueError(f"{built_dir} holds {stats['dataset']!r}, not {self.builder_config.name!r}")
        return {split: self._generate_examples(split_files(built_dir, split)) for split in stats["splits"]}

    def _generate_examples(self, files):
        for path in files:
            for task in read_records(path, TracedTask):
                example = {name: getattr(task, name) or "" for name in TEXT_FIELDS}
                example.update(tests=list(task.tests), eval_tests=list(task.eval_tests),
                               meta=json.dumps(task.meta, sort_keys=True),
                               traces=[{"test": t.test, "traced_code": t.traced_code,
                                        "outcome": t.outcome, "truncated": t.truncated}
                                       for t in task.traces])
                yield task.task_id, example


def load(built_dir: str, split: str, *, data_dir: Optional[str] = None, **kwargs):
    """``tfds.load`` of a built dataset's split (prepared into ``<built_dir>/tfds`` by default)."""
    dataset = read_stats(built_dir)["dataset"]
    config = tfds.download.DownloadConfig(manual_dir=built_dir)
    return tfds.load(f"{NAME}/{dataset}", split=split, data_dir=data_dir or nj_io.join(built_dir, "tfds"),
                     download_and_prepare_kwargs={"download_config": config}, **kwargs)

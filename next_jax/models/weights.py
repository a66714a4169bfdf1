"""Where a model's weights come from: a Hugging Face directory, an orbax checkpoint, or a seed.

Entry functions take one ``checkpoint`` value and get sharded parameters back, whichever kind it
names; the model config (the gin MODEL) stays the source of truth for shapes, and a checkpoint
that does not fit it fails with the tensor's name.
"""

from __future__ import annotations

from typing import Optional

from absl import logging

from next_jax import checkpoints, partitioning
from next_jax import io as nj_io
from next_jax.errors import UserFileNotFoundError
from next_jax.models import hf_checkpoint, hf_repos
from next_jax.models.config import ModelConfig
from next_jax.models.transformer import abstract_params, random_params



def is_hf_checkpoint(path: str) -> bool:
    return nj_io.exists(nj_io.join(path, "config.json")) and any(
        name.endswith(".safetensors") or name == "model.safetensors.index.json" for name in nj_io.listdir(path)
    )


def _looks_like_hf(path: str) -> bool:
    """A Hugging Face directory missing its weights (not an orbax checkpoint or run directory)."""
    names = set(nj_io.listdir(path))
    orbax = "_METADATA" in names or checkpoints.SUBDIR in names or any(n.isdigit() for n in names)
    return not orbax and bool(names & {"config.json", "tokenizer.json", "tokenizer_config.json"})


def model_id(checkpoint: Optional[str], init_seed: int = 0) -> str:
    """What Sample.model records for these weights."""
    if checkpoint is None:
        return f"random-init:{init_seed}"
    return nj_io.absolute(checkpoint)


def load_params(
    checkpoint: Optional[str],
    config: ModelConfig,
    partitioner: partitioning.Partitioner,
    *,
    init_seed: int = 0,
) -> tuple:
    """(params, model id) for ``checkpoint``: None = random init from ``init_seed``; a directory with
    config.json and safetensors = Hugging Face import; any other directory = orbax (a training run's
    MODEL_DIR, one of its step directories, or a bare pytree checkpoint; see checkpoints.py)."""
    if checkpoint is None:
        logging.info("No checkpoint: random parameters from seed %d", init_seed)
        return random_params(config, partitioner, init_seed), model_id(None, init_seed)
    if not nj_io.isdir(checkpoint):
        raise UserFileNotFoundError(f"checkpoint {checkpoint!r} is not a directory; give a Hugging Face "
                                    "directory, an orbax checkpoint or a training MODEL_DIR")
    if not is_hf_checkpoint(checkpoint) and _looks_like_hf(checkpoint):
        hf_repos.require(checkpoint, repo=hf_repos.repo_for(config.vocab_size, config.hidden_size, config.num_layers),
                         what="checkpoint")
    abstract, _ = abstract_params(config, partitioner)
    if is_hf_checkpoint(checkpoint):
        logging.info("Importing Hugging Face checkpoint %s", checkpoint)
        _, params = hf_checkpoint.load_hf_checkpoint(
            checkpoint, partitioner=partitioner, config=config, abstract_params=abstract
        )
    else:
        logging.info("Restoring orbax checkpoint %s", checkpoint)
        params = checkpoints.restore_params(checkpoint, abstract)
    return params, model_id(checkpoint)

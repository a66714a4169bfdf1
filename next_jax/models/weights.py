"""Where a model's weights come from: a Hugging Face directory, an orbax checkpoint, or a seed.

Entry functions take one ``checkpoint`` value and get sharded parameters back, whichever kind it
names; the model config (the gin MODEL) stays the source of truth for shapes, and a checkpoint
that does not fit it fails with the tensor's name.
"""

from __future__ import annotations

import os
from typing import Optional

import jax
import jax.numpy as jnp
from absl import logging

from next_jax import partitioning
from next_jax.models import hf_checkpoint
from next_jax.models.config import ModelConfig
from next_jax.models.transformer import Transformer


def _init_fn(config: ModelConfig):
    return lambda rng: Transformer(config).init(rng, jnp.zeros((1, 1), jnp.int32))


def abstract_params(config: ModelConfig, partitioner: partitioning.Partitioner):
    """(ShapeDtypeStructs with shardings, logical axes) of the ``params`` collection."""
    abstract, logical = partitioner.init_abstract(_init_fn(config), jax.random.key(0))
    return abstract["params"], logical["params"]


def random_params(config: ModelConfig, partitioner: partitioning.Partitioner, seed: int = 0):
    """Freshly initialised parameters, born sharded (tests, demos, benchmarks)."""
    return partitioner.init(_init_fn(config), jax.random.key(seed))["params"]


def is_hf_checkpoint(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json")) and any(
        name.endswith(".safetensors") or name == "model.safetensors.index.json" for name in os.listdir(path)
    )


def _orbax_item_dir(path: str) -> str:
    """A pytree checkpoint directory: ``path`` itself, or the latest step of a CheckpointManager root
    (its ``state`` item when there is one)."""
    steps = [name for name in os.listdir(path) if name.isdigit() and os.path.isdir(os.path.join(path, name))]
    if not steps:
        return path
    step_dir = os.path.join(path, max(steps, key=int))
    state_dir = os.path.join(step_dir, "state")
    return state_dir if os.path.isdir(state_dir) else step_dir


def restore_orbax_params(path: str, abstract):
    """Restores the parameters from an orbax pytree checkpoint into ``abstract``'s shardings.

    The saved tree is either the parameters themselves or a larger state with a top-level
    ``params`` entry (e.g. a train state); only the parameters are read.
    """
    import orbax.checkpoint as ocp

    directory = os.path.abspath(_orbax_item_dir(path))
    if not os.path.isfile(os.path.join(directory, "_METADATA")):
        raise ValueError(
            f"{path}: neither a Hugging Face checkpoint (config.json + *.safetensors) nor an orbax pytree "
            f"checkpoint (no {os.path.join(directory, '_METADATA')})"
        )
    checkpointer = ocp.PyTreeCheckpointer()
    metadata = checkpointer.metadata(directory)
    tree = getattr(metadata, "item_metadata", metadata)
    tree = getattr(tree, "tree", tree)
    target = {"params": abstract} if isinstance(tree, dict) and "params" in tree else abstract
    restored = checkpointer.restore(
        directory,
        args=ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True
        ),
    )
    return restored["params"] if target is not abstract else restored


def model_id(checkpoint: Optional[str], init_seed: int = 0) -> str:
    """What Sample.model records for these weights."""
    return f"random-init:{init_seed}" if checkpoint is None else os.path.abspath(checkpoint)


def load_params(
    checkpoint: Optional[str],
    config: ModelConfig,
    partitioner: partitioning.Partitioner,
    *,
    init_seed: int = 0,
) -> tuple:
    """(params, model id) for ``checkpoint``: None = random init from ``init_seed``; a directory with
    config.json and safetensors = Hugging Face import; any other directory = orbax."""
    if checkpoint is None:
        logging.info("No checkpoint: random parameters from seed %d", init_seed)
        return random_params(config, partitioner, init_seed), model_id(None, init_seed)
    if not os.path.isdir(checkpoint):
        raise FileNotFoundError(f"checkpoint {checkpoint!r} is not a directory")
    abstract, _ = abstract_params(config, partitioner)
    if is_hf_checkpoint(checkpoint):
        logging.info("Importing Hugging Face checkpoint %s", checkpoint)
        _, params = hf_checkpoint.load_hf_checkpoint(
            checkpoint, partitioner=partitioner, config=config, abstract_params=abstract
        )
    else:
        logging.info("Restoring orbax checkpoint %s", checkpoint)
        params = restore_orbax_params(checkpoint, abstract)
    return params, model_id(checkpoint)

"""The train state (step, parameters, optimizer state) and its layout over the mesh.

The layout is never guessed leaf by leaf: the whole state is traced abstractly (``jax.eval_shape``
of the model's initialiser followed by the optimizer's ``init``), parameters take the shardings
their logical axes give through the partitioner, optimizer moments that mirror the parameters take
the same shardings, and everything else (step counters, factored moments) is replicated. A sharded
dimension that does not divide the mesh fails here, naming the parameter.
"""

from __future__ import annotations

from typing import Any, Callable, Tuple

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from next_jax import partitioning


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # [] int32: optimizer updates applied so far
    params: Any
    opt_state: Any

    @classmethod
    def create(cls, params, tx: optax.GradientTransformation) -> "TrainState":
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

    def apply_gradients(self, grads, tx: optax.GradientTransformation) -> "TrainState":
        updates, opt_state = tx.update(grads, self.opt_state, self.params)
        return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates), opt_state=opt_state)


def state_shardings(abstract_state: TrainState, params_logical, partitioner: partitioning.Partitioner) -> TrainState:
    """NamedSharding tree of a TrainState from the parameters' logical axes."""
    params = partitioner.shardings(params_logical, abstract_state.params)
    opt_state = partitioner.optimizer_shardings(abstract_state.opt_state, params_logical)
    return TrainState(step=partitioner.replicated, params=params, opt_state=opt_state)


def abstract_state(init_fn: Callable, tx: optax.GradientTransformation,
                   partitioner: partitioning.Partitioner) -> Tuple[TrainState, TrainState, Any]:
    """(state of ShapeDtypeStructs with shardings, the sharding tree, parameters' logical axes).

    ``init_fn(rng)`` returns the model's boxed variables; nothing is computed or allocated.
    """
    with partitioner.context():
        boxed = jax.eval_shape(init_fn, jax.random.key(0))
    logical = nn.get_partition_spec(boxed)["params"]
    shapes = jax.eval_shape(lambda params: TrainState.create(params, tx), nn.unbox(boxed)["params"])
    shardings = state_shardings(shapes, logical, partitioner)
    abstract = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)
    return abstract, shardings, logical

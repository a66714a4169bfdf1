"""Per-layer and stacked (scanned) parameter layouts, and the one conversion between them.

With ``ModelConfig.scan_layers`` off, a model's parameters hold one sub-tree per layer,
``layers_0``, ``layers_1``, ...; with it on, one sub-tree ``layers`` whose arrays carry a leading
axis of size ``num_layers`` (logical axis ``layers``). Both describe the same weights, so
``scan_layers`` is a runtime choice: everything that reads or writes parameters (checkpoint
restore, Hugging Face import and export) converts here rather than caring which layout it met.

The conversion works on any pytree that contains parameter-shaped dicts: the parameters
themselves, a ``{'params': ...}`` collection, or a whole train state whose optimizer moments
mirror the parameters. It applies to arrays (``convert``) and to abstract targets
(``convert_abstract``: ShapeDtypeStructs with shardings, for restoring a checkpoint in the layout
it was saved in before converting it).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from next_jax.partitioning import path_name

STACKED = "layers"
_LAYER = re.compile(r"^layers_(\d+)$")


def layer_name(index: int) -> str:
    return f"layers_{index}"


def _num_layers(node: Mapping) -> int:
    return sum(1 for key in node if isinstance(key, str) and _LAYER.match(key))


def _is_layers_dict(node) -> bool:
    return isinstance(node, Mapping) and (STACKED in node or layer_name(0) in node)


def layout_of(tree) -> Optional[bool]:
    """True for stacked layers, False for per-layer, None when ``tree`` holds no layers."""
    found = []
    jax.tree.map(lambda node: found.append(STACKED in node) if _is_layers_dict(node) else None, tree,
                 is_leaf=_is_layers_dict)
    if not found:
        return None
    if len(set(found)) > 1:
        raise ValueError("parameter tree mixes stacked ('layers') and per-layer ('layers_<i>') sub-trees")
    return found[0]


def _convert(tree, stacked: bool, stack: Callable, unstack: Callable):
    def one(node):
        if not _is_layers_dict(node):
            return node
        if stacked and STACKED not in node:
            count = _num_layers(node)
            per_layer = [node[layer_name(i)] for i in range(count)]
            rest = {k: v for k, v in node.items() if not (isinstance(k, str) and _LAYER.match(k))}
            return {**rest, STACKED: jax.tree.map(lambda *xs: stack(xs), *per_layer)}
        if not stacked and STACKED in node:
            group = node[STACKED]
            count = jax.tree.leaves(group)[0].shape[0]
            rest = {k: v for k, v in node.items() if k != STACKED}
            return {**rest, **{layer_name(i): jax.tree.map(lambda x, i=i: unstack(x, i), group) for i in range(count)}}
        return node

    return jax.tree.map(one, tree, is_leaf=_is_layers_dict)


def convert(tree, stacked: bool):
    """``tree`` with its layers stacked (``stacked=True``) or split per layer; arrays are copied
    (run it under ``jax.jit`` with the target's ``out_shardings`` to place the result)."""
    return _convert(tree, stacked, jnp.stack, lambda x, i: x[i])


def _spec(sharding, ndim: int) -> tuple:
    spec = tuple(sharding.spec) if isinstance(sharding, NamedSharding) else ()
    return spec + (None,) * (ndim - len(spec))


def _stack_abstract(xs):
    first = xs[0]
    sharding = getattr(first, "sharding", None)
    if isinstance(sharding, NamedSharding):
        sharding = NamedSharding(sharding.mesh, P(None, *_spec(sharding, len(first.shape))))
    return jax.ShapeDtypeStruct((len(xs),) + tuple(first.shape), first.dtype, sharding=sharding)


def _unstack_abstract(x, index):
    del index
    sharding = getattr(x, "sharding", None)
    if isinstance(sharding, NamedSharding):
        sharding = NamedSharding(sharding.mesh, P(*_spec(sharding, len(x.shape))[1:]))
    return jax.ShapeDtypeStruct(tuple(x.shape[1:]), x.dtype, sharding=sharding)


def convert_abstract(tree, stacked: bool):
    """The abstract target (ShapeDtypeStructs, shardings kept per slice) in the other layout."""
    return _convert(tree, stacked, _stack_abstract, _unstack_abstract)


def per_layer_items(params) -> dict:
    """{'layers_0/attn/q_proj/kernel': thunk, ...}: every parameter by its per-layer name, whatever
    the layout; a thunk returns the array (a stacked parameter's slice only when asked for, so an
    exporter never holds a second copy of the model)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = path_name(path)
        head, _, rest = name.partition("/")
        if head == STACKED:
            for i in range(leaf.shape[0]):
                out[f"{layer_name(i)}/{rest}"] = lambda leaf=leaf, i=i: leaf[i]
        else:
            out[name] = lambda leaf=leaf: leaf
    return out


def restore_in_any_layout(saved_tree: Any, target, restore: Callable[[Any], Any]):
    """Restores with ``restore(abstract)`` in the layout the checkpoint was saved in (as seen in
    ``saved_tree``, its metadata), converting to ``target``'s layout and shardings if they differ."""
    saved, wanted = layout_of(saved_tree), layout_of(target)
    if saved is None or wanted is None or saved == wanted:
        return restore(target)
    restored = restore(convert_abstract(target, saved))
    shardings = jax.tree.map(lambda a: a.sharding, target)
    return jax.jit(lambda t: convert(t, wanted), out_shardings=shardings)(restored)

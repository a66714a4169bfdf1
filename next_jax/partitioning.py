"""Meshes, logical axis rules and shardings: how next_jax lays arrays out over devices.

The model names every parameter and main activation dimension with a *logical* axis ('embed',
'heads', 'batch', ...). A priority-ordered rule list maps logical axes onto the three *mesh* axes
('data', 'fsdp', 'model'), so one model runs on one CPU, on 8 fake devices or on a pod by changing
only the mesh sizes (or, rarely, the rules). Mesh axes are GSPMD-style Auto axes: shardings are
hints the compiler propagates, not part of array types, which is what logical constraints inside a
flax linen model need.

The :class:`Partitioner` owns one mesh and one rule list and hands out what the rest of the code
needs: NamedSharding trees for parameters, optimizer state and batches, parameters created
directly in their sharded layout (never materialised on one host), jitted callables that run
under the mesh and the rules, global batches built from each host's local rows, and a table of
every parameter's layout for the logs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Callable, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from next_jax import io as nj_io
from next_jax.errors import UserValueError

MESH_AXES = ("data", "fsdp", "model")

# Priority-ordered: for each array, rules are applied in this order and a rule only takes a mesh
# axis that no earlier rule already gave to another dimension of the same array. A logical axis may
# appear several times (first free mesh axis wins); every logical axis the model uses must appear
# at least once (mapping to None = replicated), so a misspelt name fails loudly.
DEFAULT_RULES: tuple = (
    # Batch-like dimensions: data parallelism, plus the fsdp axis (fsdp is data parallel too).
    ("batch", ("data", "fsdp")),
    ("cache_batch", ("data", "fsdp")),
    # Tensor (model) parallelism.
    ("vocab", "model"),
    ("heads", "model"),
    ("kv_heads", "model"),
    ("mlp", "model"),
    ("act_heads", "model"),
    ("act_kv_heads", "model"),
    ("act_mlp", "model"),
    ("act_vocab", "model"),
    ("cache_kv_heads", "model"),
    # Parameters' hidden dimension is split over fsdp (gathered on use).
    ("embed", "fsdp"),
    # Replicated. 'layers' is the leading axis of scanned layers' stacked parameters (and of their
    # stacked KV cache): every device holds every layer's slice of its shards, since the scan
    # reads one layer at a time.
    ("layers", None),
    ("head_dim", None),
    ("norm", None),
    ("length", None),
    ("act_embed", None),
    ("act_head_dim", None),
    ("cache_length", None),
    ("cache_head_dim", None),
)


class ShardingError(UserValueError):
    """An array whose logical axes cannot be laid out on the mesh; the message names the array."""


# ---------------------------------------------------------------------------------------------
# Mesh.


def resolve_axis_sizes(axis_sizes: Optional[Mapping[str, int]], num_devices: int) -> dict:
    """Fills in the mesh axis sizes: unnamed axes are 1, one axis may be -1 (the rest of the devices).

    When no named axis is -1, 'data' (if unnamed) takes the remaining devices, so
    ``{'model': 2}`` on 8 devices means data=4, fsdp=1, model=2.
    """
    given = dict(axis_sizes or {})
    unknown = sorted(set(given) - set(MESH_AXES))
    if unknown:
        raise ValueError(f"unknown mesh axis name(s) {unknown}; the mesh axes are {list(MESH_AXES)}")
    for name, size in given.items():
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or (size < 1 and size != -1):
            raise ValueError(f"mesh axis {name!r} has size {size!r}; sizes are positive ints or -1")
    sizes = {name: int(given.get(name, 1)) for name in MESH_AXES}
    if -1 not in sizes.values() and "data" not in given:
        sizes["data"] = -1
    auto = [name for name, size in sizes.items() if size == -1]
    if len(auto) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {auto} in {sizes}")
    fixed = math.prod(size for size in sizes.values() if size != -1)
    if auto:
        if num_devices % fixed:
            raise ValueError(
                f"mesh axis sizes {sizes}: the fixed axes multiply to {fixed}, which does not divide "
                f"the {num_devices} devices, so {auto[0]!r} cannot be filled in"
            )
        sizes[auto[0]] = num_devices // fixed
    elif fixed != num_devices:
        raise ValueError(
            f"mesh axis sizes {sizes} multiply to {fixed} but there are {num_devices} devices; "
            "make them multiply to the device count or set one axis to -1"
        )
    return sizes


def make_mesh(
    axis_sizes: Optional[Mapping[str, int]] = None, devices: Optional[Sequence[Any]] = None
) -> Mesh:
    """A ('data', 'fsdp', 'model') mesh with Auto axes over ``devices`` (default: all devices)."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = resolve_axis_sizes(axis_sizes, len(devices))
    return jax.make_mesh(
        tuple(sizes[name] for name in MESH_AXES),
        MESH_AXES,
        axis_types=(AxisType.Auto,) * len(MESH_AXES),
        devices=devices,
    )


# ---------------------------------------------------------------------------------------------
# Logical -> mesh axes.


def _is_spec(x) -> bool:
    return isinstance(x, P)


def path_name(path) -> str:
    """'params/layers_0/attn/q_proj/kernel' for a pytree key path."""
    return jax.tree_util.keystr(path, simple=True, separator="/")


def logical_to_mesh_spec(logical: Sequence[Optional[str]], rules: Sequence = DEFAULT_RULES) -> P:
    """Maps one array's logical axis names onto mesh axes with the priority-ordered rules.

    Resolution follows flax's (the one ``nn.with_logical_constraint`` uses inside the model), so
    parameters and activations agree; a name no rule mentions is an error rather than silently
    replicated.
    """
    known = {name for name, _ in rules}
    for name in logical:
        if isinstance(name, str) and name not in known:
            raise ShardingError(
                f"logical axis {name!r} has no rule (known: {sorted(known)}); add e.g. "
                f"({name!r}, None) to the rules"
            )
    return nn.logical_to_mesh_axes(tuple(logical), tuple(rules))


def _mesh_axis_size(mesh: Mesh, axes) -> int:
    if axes is None:
        return 1
    if isinstance(axes, str):
        axes = (axes,)
    return math.prod(mesh.shape[a] for a in axes)


def check_divisible(name: str, shape, logical, spec: P, mesh: Mesh) -> None:
    """Raises ShardingError naming ``name`` when a sharded dimension does not divide evenly."""
    shape = tuple(shape)
    if len(logical) != len(shape):
        raise ShardingError(
            f"{name}: shape {shape} has {len(shape)} dimensions but logical axes {tuple(logical)} "
            f"name {len(logical)}"
        )
    for dim, (size, axes) in enumerate(zip(shape, tuple(spec) + (None,) * len(shape))):
        parts = _mesh_axis_size(mesh, axes)
        if size % parts:
            raise ShardingError(
                f"{name}: dimension {dim} (logical axis {logical[dim]!r}, size {size}) is not divisible "
                f"by mesh axes {axes!r} of size {parts} (shape {shape}, logical axes {tuple(logical)}, "
                f"mesh {dict(mesh.shape)}); choose mesh sizes that divide it, or put a rule such as "
                f"({logical[dim]!r}, None) before the defaults"
            )


def shard_shape(shape, spec: P, mesh: Mesh) -> tuple:
    """The per-device block of an array of ``shape`` laid out by ``spec`` on ``mesh``."""
    spec = tuple(spec) + (None,) * (len(shape) - len(spec))
    return tuple(-(-size // _mesh_axis_size(mesh, axes)) for size, axes in zip(shape, spec))


# ---------------------------------------------------------------------------------------------
# Parameter table.


@dataclasses.dataclass(frozen=True)
class ParamRow:
    name: str
    shape: tuple
    dtype: str
    logical_axes: tuple
    mesh_axes: tuple
    bytes_per_device: int


@dataclasses.dataclass(frozen=True)
class ParamTable:
    """Every parameter's layout: the first thing to read when a model does not fit."""

    rows: tuple
    mesh_shape: dict

    @property
    def total_params(self) -> int:
        return sum(math.prod(r.shape) for r in self.rows)

    @property
    def total_bytes_per_device(self) -> int:
        return sum(r.bytes_per_device for r in self.rows)

    def __str__(self) -> str:
        header = ("name", "shape", "dtype", "logical axes", "mesh axes", "bytes/device")
        lines = [header] + [
            (
                r.name,
                "x".join(map(str, r.shape)) or "scalar",
                r.dtype,
                ", ".join(str(a) for a in r.logical_axes) or "-",
                ", ".join(str(a) for a in r.mesh_axes) or "-",
                f"{r.bytes_per_device:,}",
            )
            for r in self.rows
        ]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
        out.insert(1, "  ".join("-" * w for w in widths))
        out.append(
            f"{len(self.rows)} arrays, {self.total_params:,} parameters, "
            f"{self.total_bytes_per_device:,} bytes per device on mesh {self.mesh_shape}"
        )
        return "\n".join(out)

    def save(self, path: str) -> None:
        """Writes the table as text, atomically."""
        nj_io.write_text(path, str(self) + "\n")


# ---------------------------------------------------------------------------------------------
# Partitioner.


class PartitionedFn:
    """A jitted function that traces and runs under its mesh and logical axis rules."""

    def __init__(self, jitted, mesh: Mesh, rules):
        self._jitted = jitted
        self._mesh = mesh
        self._rules = tuple(rules)

    @contextlib.contextmanager
    def _context(self):
        with jax.set_mesh(self._mesh), nn.logical_axis_rules(self._rules):
            yield

    def __call__(self, *args, **kwargs):
        with self._context():
            return self._jitted(*args, **kwargs)

    def lower(self, *args, **kwargs):
        with self._context():
            return self._jitted.lower(*args, **kwargs)


class Partitioner:
    """One mesh plus one rule list; turns logical axes into shardings and jitted callables."""

    def __init__(self, mesh: Optional[Mesh] = None, rules: Sequence = DEFAULT_RULES, *,
                 axis_sizes: Optional[Mapping[str, int]] = None):
        """``mesh``, or (e.g. from gin: ``partitioner = @partitioning.Partitioner()``) the mesh
        axis sizes of a mesh over every device (see ``resolve_axis_sizes``)."""
        if mesh is not None and axis_sizes is not None:
            raise ValueError("Partitioner: give a mesh or axis_sizes, not both")
        self.mesh = mesh if mesh is not None else make_mesh(axis_sizes)
        self.rules = tuple((name, tuple(axes) if isinstance(axes, list) else axes) for name, axes in rules)

    def __eq__(self, other) -> bool:
        return isinstance(other, Partitioner) and (self.mesh, self.rules) == (other.mesh, other.rules)

    def __hash__(self) -> int:
        return hash((self.mesh, self.rules))

    @classmethod
    def from_axis_sizes(
        cls, axis_sizes: Optional[Mapping[str, int]] = None, rules: Sequence = DEFAULT_RULES, devices=None
    ) -> "Partitioner":
        return cls(make_mesh(axis_sizes, devices), rules)

    # -- shardings --------------------------------------------------------------------------

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def mesh_spec(self, logical: Sequence[Optional[str]]) -> P:
        return logical_to_mesh_spec(logical, self.rules)

    def sharding(self, logical: Sequence[Optional[str]]) -> NamedSharding:
        return NamedSharding(self.mesh, self.mesh_spec(logical))

    def mesh_axes(self, logical_tree) -> Any:
        """A tree of mesh PartitionSpecs for a tree of logical PartitionSpecs."""
        return jax.tree.map(self.mesh_spec, logical_tree, is_leaf=_is_spec)

    def shardings(self, logical_tree, shapes=None) -> Any:
        """NamedSharding tree for a tree of logical PartitionSpecs (as ``nn.get_partition_spec`` gives).

        With ``shapes`` (arrays or ShapeDtypeStructs, same tree), every sharded dimension is checked
        to divide evenly, and the error names the offending parameter.
        """
        if shapes is None:
            return jax.tree.map(self.sharding, logical_tree, is_leaf=_is_spec)

        def one(path, logical, shaped):
            spec = self.mesh_spec(logical)
            check_divisible(path_name(path), np.shape(shaped), tuple(logical), spec, self.mesh)
            return NamedSharding(self.mesh, spec)

        return jax.tree_util.tree_map_with_path(one, logical_tree, shapes, is_leaf=_is_spec)

    def optimizer_shardings(self, opt_state_shapes, params_logical_axes) -> Any:
        """Shardings for an optax state: sub-trees that mirror the parameters take their layout.

        Optax states (Adam's mu/nu, momentum traces, EMA) hold trees with the parameters' structure;
        a leaf of such a tree that has its parameter's rank and divides evenly is sharded like the
        parameter. Everything else (step counts, factored second moments of other shapes) is
        replicated.
        """
        param_def = jax.tree.structure(params_logical_axes, is_leaf=_is_spec)
        specs = jax.tree.leaves(params_logical_axes, is_leaf=_is_spec)

        def mirrors_params(node) -> bool:
            try:
                return jax.tree.structure(node) == param_def
            except Exception:  # noqa: BLE001 - unusual nodes simply do not mirror
                return False

        def layout(node):
            if not mirrors_params(node):
                return jax.tree.map(lambda _: self.replicated, node)
            leaves = jax.tree.leaves(node)
            out = []
            for leaf, logical in zip(leaves, specs):
                shape = np.shape(leaf)
                spec = self.mesh_spec(logical)
                fits = len(shape) == len(logical) and all(
                    size % _mesh_axis_size(self.mesh, axes) == 0
                    for size, axes in zip(shape, tuple(spec) + (None,) * len(shape))
                )
                out.append(NamedSharding(self.mesh, spec) if fits else self.replicated)
            return jax.tree.unflatten(param_def, out)

        return jax.tree.map(layout, opt_state_shapes, is_leaf=mirrors_params)

    # -- parameters born sharded -------------------------------------------------------------

    def init_abstract(self, init_fn: Callable, *args) -> tuple:
        """(shapes with shardings, logical axes) of ``init_fn(*args)``'s unboxed output, no FLOPs."""
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
            boxed = jax.eval_shape(init_fn, *args)
        logical = nn.get_partition_spec(boxed)
        shapes = nn.unbox(boxed)
        shardings = self.shardings(logical, shapes)
        abstract = jax.tree.map(
            lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
        )
        return abstract, logical

    def init(self, init_fn: Callable, *args, with_axes: bool = False):
        """Runs ``init_fn(*args)`` (e.g. ``model.init``) with every output created in its shard.

        The output is unboxed (plain arrays); ``with_axes=True`` also returns the logical axes tree
        for ``shardings`` / ``param_table``.
        """
        abstract, logical = self.init_abstract(init_fn, *args)
        shardings = jax.tree.map(lambda a: a.sharding, abstract)
        init = self.jit(lambda *a: nn.unbox(init_fn(*a)), out_shardings=shardings)
        variables = init(*args)
        return (variables, logical) if with_axes else variables

    # -- jitted callables -------------------------------------------------------------------

    def _to_sharding(self, tree):
        if tree is None:
            return None
        return jax.tree.map(
            lambda s: NamedSharding(self.mesh, s) if isinstance(s, P) else s, tree, is_leaf=_is_spec
        )

    def jit(
        self,
        fn: Callable,
        *,
        in_shardings=None,
        out_shardings=None,
        donate_argnums=(),
        static_argnums=(),
        static_argnames=(),
    ) -> PartitionedFn:
        """``jax.jit`` that traces and runs under this mesh and rules (PartitionSpecs = mesh axes)."""
        kwargs = dict(donate_argnums=donate_argnums, static_argnums=static_argnums, static_argnames=static_argnames)
        if in_shardings is not None:
            kwargs["in_shardings"] = self._to_sharding(in_shardings)
        if out_shardings is not None:
            kwargs["out_shardings"] = self._to_sharding(out_shardings)
        return PartitionedFn(jax.jit(fn, **kwargs), self.mesh, self.rules)

    @contextlib.contextmanager
    def context(self):
        """Mesh and rules for code that builds shardings itself (e.g. eager model calls)."""
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
            yield

    # -- data -------------------------------------------------------------------------------

    def batch_spec(self, ndim: int, logical: Optional[Sequence[Optional[str]]] = None) -> P:
        logical = tuple(logical) if logical is not None else ("batch",)
        logical = (logical + (None,) * ndim)[:ndim]
        return self.mesh_spec(logical)

    def global_batch(self, local_batch, logical_axes=None) -> Any:
        """Makes each host's local rows of a batch one global jax.Array per leaf.

        ``logical_axes`` is one spec applied to every leaf's leading dimensions (default
        ('batch',)), or a tree of specs matching ``local_batch``.
        """

        def one(path, leaf, logical):
            leaf = np.asarray(leaf)
            spec = self.batch_spec(leaf.ndim, logical)
            if jax.process_count() == 1:
                padded = (tuple(logical or ("batch",)) + (None,) * leaf.ndim)[: leaf.ndim]
                check_divisible(f"batch feature {path_name(path) or '<leaf>'}", leaf.shape, padded, spec, self.mesh)
            return jax.make_array_from_process_local_data(NamedSharding(self.mesh, spec), leaf)

        single = logical_axes is None or isinstance(logical_axes, P) or (
            isinstance(logical_axes, (tuple, list))
            and all(a is None or isinstance(a, str) for a in logical_axes)
        )
        if single:
            return jax.tree_util.tree_map_with_path(lambda p, x: one(p, x, logical_axes), local_batch)
        return jax.tree_util.tree_map_with_path(one, local_batch, logical_axes, is_leaf=_is_spec)

    @property
    def num_batch_shards(self) -> int:
        """Into how many parts the 'batch' axis is split (batch sizes must be multiples of it)."""
        spec = self.batch_spec(1)
        return _mesh_axis_size(self.mesh, spec[0] if len(spec) else None)

    def data_shard_info(self) -> tuple:
        """(shard index, number of shards) of the batch rows this process feeds.

        Processes holding the same rows (model-parallel replicas) get the same index, so each
        input pipeline reads ``dataset.shard(num_shards, index)``.
        """
        spec = self.batch_spec(1)
        parts = self.num_batch_shards
        sharding = NamedSharding(self.mesh, spec)
        rows = sorted(
            {idx[0].start or 0 for idx in sharding.addressable_devices_indices_map((parts,)).values()}
        )
        local = len(rows)
        return rows[0] // local, parts // local

    # -- reporting --------------------------------------------------------------------------

    def param_table(self, params, logical_axes) -> ParamTable:
        rows = []

        def one(path, logical, leaf):
            shape = tuple(np.shape(leaf))
            spec = self.mesh_spec(logical)
            dtype = np.dtype(leaf.dtype)
            block = shard_shape(shape, spec, self.mesh)
            rows.append(
                ParamRow(
                    name=path_name(path),
                    shape=shape,
                    dtype=dtype.name,
                    logical_axes=tuple(logical),
                    mesh_axes=tuple(spec) + (None,) * (len(shape) - len(spec)),
                    bytes_per_device=math.prod(block) * dtype.itemsize,
                )
            )
            return None

        jax.tree_util.tree_map_with_path(one, logical_axes, params, is_leaf=_is_spec)
        return ParamTable(rows=tuple(rows), mesh_shape=dict(self.mesh.shape))

    def log_param_table(self, params, logical_axes, path: Optional[str] = None) -> ParamTable:
        """Logs the table and, with ``path``, saves it there (e.g. MODEL_DIR/param_table.txt)."""
        table = self.param_table(params, logical_axes)
        logging.info("Parameters:\n%s", table)
        if path:
            table.save(path)
        return table

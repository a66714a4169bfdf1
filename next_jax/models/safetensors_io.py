"""Reading and writing Hugging Face safetensors checkpoints tensor by tensor, bfloat16 included.

Reading goes through the ``safetensors`` package: ``safe_open(path, framework="numpy")`` maps the
file and ``get_slice(name)[a:b, c:d]`` reads only that block (bfloat16 comes back as an
``ml_dtypes.bfloat16`` array), which is what lets the importer stream each device's shard straight
from disk. Writing is this module's own: ``safetensors.numpy.save_file`` needs every tensor in
memory at once, while :func:`write_file` writes the header from shapes alone, then one tensor at a
time, so exporting a model never holds more than one tensor on the host.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Callable, Mapping, Optional, Sequence

import ml_dtypes
import numpy as np

from next_jax import io as nj_io
from next_jax.errors import UserValueError

DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype(np.uint8),
    "I8": np.dtype(np.int8),
    "I16": np.dtype(np.int16),
    "U16": np.dtype(np.uint16),
    "I32": np.dtype(np.int32),
    "U32": np.dtype(np.uint32),
    "I64": np.dtype(np.int64),
    "U64": np.dtype(np.uint64),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F32": np.dtype(np.float32),
    "F64": np.dtype(np.float64),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}

_ALIGN = 8


class SafetensorsError(UserValueError):
    """A malformed checkpoint; the message names the file (the index, for an index problem)."""


def _open(path: str):
    from safetensors import SafetensorError, safe_open

    try:
        return safe_open(path, framework="numpy")
    except SafetensorError as e:
        raise SafetensorsError(f"{path}: not a readable safetensors file ({e})") from None


class CheckpointReader:
    """All tensors of a checkpoint directory: one ``model.safetensors`` or a sharded index.

    ``reader[name]`` reads a whole tensor; ``reader.lazy(name)[a:b, c:d]`` reads one block.
    """

    INDEX = "model.safetensors.index.json"

    def __init__(self, directory: str):
        nj_io.require_local(directory, "Hugging Face checkpoint directory",
                            "its safetensors files are memory-mapped by the safetensors package")
        self.directory = directory
        index_path = nj_io.join(directory, self.INDEX)
        if nj_io.exists(index_path):
            try:
                weight_map = json.loads(nj_io.read_text(index_path))["weight_map"]
                files = sorted(set(weight_map.values()))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
                raise SafetensorsError(f"{index_path}: no valid 'weight_map' ({e!r})") from None
            for name in files:
                if not nj_io.exists(nj_io.join(directory, name)):
                    count = sum(1 for f in weight_map.values() if f == name)
                    raise SafetensorsError(f"{index_path}: maps {count} tensors to {name}, which does not "
                                           f"exist in {directory}")
        else:
            files = sorted(n for n in nj_io.listdir(directory) if n.endswith(".safetensors"))
            if not files:
                raise FileNotFoundError(f"{directory}: no *.safetensors files and no {self.INDEX}")
            weight_map = None
        self._files = {name: _open(nj_io.join(directory, name)) for name in files}
        self._where = {}
        for file_name, handle in self._files.items():
            for key in handle.keys():
                self._where[key] = file_name
        if weight_map is not None:
            for key, file_name in weight_map.items():
                if self._where.get(key) != file_name:
                    raise SafetensorsError(f"{index_path}: {key!r} is mapped to {file_name}, which does not hold it")

    def keys(self) -> list:
        return list(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def file_of(self, name: str) -> str:
        return nj_io.join(self.directory, self._file_name(name))

    def _file_name(self, name: str) -> str:
        try:
            return self._where[name]
        except KeyError:
            raise KeyError(f"{self.directory}: checkpoint has no tensor {name!r}") from None

    def lazy(self, name: str):
        """A view that reads only what is sliced: ``view[a:b, c:d]`` is a numpy array."""
        return self._files[self._file_name(name)].get_slice(name)

    def shape(self, name: str) -> tuple:
        return tuple(self.lazy(name).get_shape())

    def dtype(self, name: str) -> np.dtype:
        return DTYPES[self.lazy(name).get_dtype()]

    def metadata(self, name: str) -> dict:
        """The ``__metadata__`` of the file that holds tensor ``name``."""
        return self._files[self._file_name(name)].metadata() or {}

    def __getitem__(self, name: str) -> np.ndarray:
        return self._files[self._file_name(name)].get_tensor(name)


# ---------------------------------------------------------------------------------------------
# Writing.


def _header(specs: Sequence[tuple], metadata: Optional[Mapping[str, str]]) -> bytes:
    header = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, shape, dtype in specs:
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        header[name] = {
            "dtype": DTYPE_NAMES[np.dtype(dtype)],
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % _ALIGN)
    return struct.pack("<Q", len(raw)) + raw


def write_file(
    path: str,
    specs: Sequence[tuple],
    produce: Callable[[str], np.ndarray],
    metadata: Optional[Mapping[str, str]] = None,
) -> int:
    """Writes ``specs`` = [(name, shape, dtype)] to ``path``, asking ``produce(name)`` for each tensor.

    Only one tensor is in memory at a time; the file appears under its name only when complete.
    Returns the number of data bytes written.
    """
    written = 0
    with nj_io.atomic_write(path, "wb") as f:
        f.write(_header(specs, metadata))
        for name, shape, dtype in specs:
            array = np.ascontiguousarray(produce(name), dtype=dtype)
            if array.shape != tuple(shape):
                raise SafetensorsError(f"{path}: tensor {name!r} has shape {array.shape}, declared {tuple(shape)}")
            f.write(array.tobytes())
            written += array.nbytes
    return written


def plan_shards(specs: Sequence[tuple], max_shard_bytes: int) -> list:
    """Groups tensor specs, in order, into files of at most ``max_shard_bytes`` (one tensor may exceed)."""
    shards, current, size = [], [], 0
    for spec in specs:
        nbytes = math.prod(spec[1]) * np.dtype(spec[2]).itemsize
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(spec)
        size += nbytes
    if current:
        shards.append(current)
    return shards


def write_checkpoint(
    directory: str,
    specs: Sequence[tuple],
    produce: Callable[[str], np.ndarray],
    *,
    max_shard_bytes: int = 5 * 1024**3,
    metadata: Optional[Mapping[str, str]] = None,
) -> list:
    """Writes ``model.safetensors``, or ``model-0000i-of-0000n.safetensors`` plus the index when
    the tensors exceed ``max_shard_bytes``, in the layout Hugging Face loaders expect.

    The index is written last, so a directory with an index is complete. Returns the file names.
    """
    nj_io.makedirs(directory)
    metadata = {"format": "pt", **(metadata or {})}
    shards = plan_shards(specs, max_shard_bytes)
    if len(shards) <= 1:
        write_file(nj_io.join(directory, "model.safetensors"), list(specs), produce, metadata)
        return ["model.safetensors"]
    names, weight_map, total = [], {}, 0
    for i, shard in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        total += write_file(nj_io.join(directory, name), shard, produce, metadata)
        names.append(name)
        weight_map.update({spec[0]: name for spec in shard})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    nj_io.write_text(nj_io.join(directory, CheckpointReader.INDEX), json.dumps(index, indent=2))
    return names

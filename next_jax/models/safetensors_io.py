"""Reading and writing the safetensors format tensor by tensor, bfloat16 included.

Hugging Face checkpoints of the families next_jax imports are stored in bfloat16, which the
``safetensors`` package cannot hand to numpy. The format itself is simple (an 8-byte little-endian
header length, a JSON header of name -> dtype, shape, byte range, then the raw bytes), so this module
maps a file into memory and returns *views*: slicing a view reads only the pages of that slice,
which is what lets the importer stream each device's shard straight from disk. The writer streams
too: it writes the header from shapes alone, then one tensor at a time.
"""

from __future__ import annotations

import json
import math
import os
import struct
from typing import Callable, Mapping, Optional, Sequence

import ml_dtypes
import numpy as np

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

_MAX_HEADER_BYTES = 100 * 1024 * 1024
_ALIGN = 8


class SafetensorsError(ValueError):
    """A malformed file; the message names the file (and the tensor)."""


class SafetensorsFile:
    """A memory-mapped safetensors file; ``file[name]`` is a read-only view, sliced lazily."""

    def __init__(self, path: str):
        self.path = path
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise SafetensorsError(f"{path}: too short to be a safetensors file ({size} bytes)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > min(_MAX_HEADER_BYTES, size - 8):
                raise SafetensorsError(f"{path}: header length {header_len} is impossible for a {size}-byte file")
            try:
                header = json.loads(f.read(header_len))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise SafetensorsError(f"{path}: header is not valid JSON ({e})") from None
        if not isinstance(header, dict):
            raise SafetensorsError(f"{path}: header is not a JSON object")
        self.metadata = header.pop("__metadata__", None) or {}
        self._data_start = 8 + header_len
        data_len = size - self._data_start
        self._entries = {}
        for name, entry in header.items():
            try:
                dtype = DTYPES[entry["dtype"]]
                shape = tuple(int(d) for d in entry["shape"])
                begin, end = (int(o) for o in entry["data_offsets"])
            except (KeyError, TypeError, ValueError) as e:
                raise SafetensorsError(f"{path}: tensor {name!r}: bad header entry {entry!r} ({e!r})") from None
            if not 0 <= begin <= end <= data_len or end - begin != math.prod(shape) * dtype.itemsize:
                raise SafetensorsError(
                    f"{path}: tensor {name!r}: byte range [{begin}, {end}) does not hold {shape} "
                    f"{entry['dtype']} within {data_len} data bytes"
                )
            self._entries[name] = (dtype, shape, begin)
        self._mmap = np.memmap(path, dtype=np.uint8, mode="r") if self._entries else None

    def keys(self) -> list:
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def shape(self, name: str) -> tuple:
        return self._entry(name)[1]

    def dtype(self, name: str) -> np.dtype:
        return self._entry(name)[0]

    def _entry(self, name: str):
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor {name!r}") from None

    def __getitem__(self, name: str) -> np.ndarray:
        dtype, shape, begin = self._entry(name)
        count = math.prod(shape)
        start = self._data_start + begin
        flat = self._mmap[start : start + count * dtype.itemsize].view(dtype)
        return flat.reshape(shape)


class CheckpointReader:
    """All tensors of a checkpoint directory: one ``model.safetensors`` or a sharded index."""

    INDEX = "model.safetensors.index.json"

    def __init__(self, directory: str):
        self.directory = directory
        index_path = os.path.join(directory, self.INDEX)
        if os.path.exists(index_path):
            with open(index_path, encoding="utf-8") as f:
                try:
                    weight_map = json.load(f)["weight_map"]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise SafetensorsError(f"{index_path}: no valid 'weight_map' ({e!r})") from None
            files = sorted(set(weight_map.values()))
        else:
            files = sorted(n for n in os.listdir(directory) if n.endswith(".safetensors"))
            if not files:
                raise FileNotFoundError(f"{directory}: no *.safetensors files and no {self.INDEX}")
            weight_map = None
        self._files = {name: SafetensorsFile(os.path.join(directory, name)) for name in files}
        self._where = {}
        for file_name, handle in self._files.items():
            for key in handle.keys():
                self._where[key] = handle
        if weight_map is not None:
            for key, file_name in weight_map.items():
                if key not in self._files[file_name]:
                    raise SafetensorsError(f"{index_path}: {key!r} is mapped to {file_name}, which does not hold it")

    def keys(self) -> list:
        return list(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def file_of(self, name: str) -> str:
        return self._handle(name).path

    def _handle(self, name: str) -> SafetensorsFile:
        try:
            return self._where[name]
        except KeyError:
            raise KeyError(f"{self.directory}: checkpoint has no tensor {name!r}") from None

    def shape(self, name: str) -> tuple:
        return self._handle(name).shape(name)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._handle(name)[name]


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
    tmp = f"{path}.tmp.{os.getpid()}"
    written = 0
    try:
        with open(tmp, "wb") as f:
            f.write(_header(specs, metadata))
            for name, shape, dtype in specs:
                array = np.ascontiguousarray(produce(name), dtype=dtype)
                if array.shape != tuple(shape):
                    raise SafetensorsError(f"{path}: tensor {name!r} has shape {array.shape}, declared {tuple(shape)}")
                f.write(array.tobytes())
                written += array.nbytes
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
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
    os.makedirs(directory, exist_ok=True)
    metadata = {"format": "pt", **(metadata or {})}
    shards = plan_shards(specs, max_shard_bytes)
    if len(shards) <= 1:
        write_file(os.path.join(directory, "model.safetensors"), list(specs), produce, metadata)
        return ["model.safetensors"]
    names, weight_map, total = [], {}, 0
    for i, shard in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        total += write_file(os.path.join(directory, name), shard, produce, metadata)
        names.append(name)
        weight_map.update({spec[0]: name for spec in shard})
    index_path = os.path.join(directory, CheckpointReader.INDEX)
    tmp = f"{index_path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    os.replace(tmp, index_path)
    return names

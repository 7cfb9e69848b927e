"""Read BERT-family checkpoint weights into numpy without importing torch.

Two on-disk formats are supported:

* ``pytorch_model.bin`` in torch's zip serialisation (torch >= 1.6): a zip holding
  ``<prefix>/data.pkl`` (a pickle describing the tensors) and ``<prefix>/data/<key>`` (raw
  storages). Pickles can execute arbitrary code, so the pickle is read with a restricted
  unpickler that only resolves the handful of globals a state dict needs, each mapped to our
  own numpy implementation; anything else raises :class:`UnsafeCheckpointError`.
* ``model.safetensors``: an 8-byte little-endian header length, a JSON header, then raw
  little-endian tensor bytes. Parsed directly so the ``safetensors`` package is not needed.

Sharded checkpoints (``*.index.json`` with a ``weight_map``) of either format are read shard
by shard.
"""

from __future__ import annotations

import json
import math
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

# Preferred order: safetensors is safe by construction and memory-mappable.
WEIGHT_FILE_NAMES: tuple[str, ...] = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)

# A JSON header bigger than this is not a real safetensors file (real ones are a few hundred KB).
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


class CheckpointError(ValueError):
    """The checkpoint is missing, malformed or in an unsupported format."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle references a global outside the state-dict allow-list (possible code execution)."""


# ---------------------------------------------------------------------------------------------
# dtype handling


def _bf16_to_f32(raw: Array) -> Array:
    """Widen bfloat16 bits (given as uint16) to float32: bf16 is the top half of an f32."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def _to_working_dtype(arr: Array) -> Array:
    """Floats become float32 (the ONNX graph is FP32); integer/bool tensors are kept as is."""
    if arr.dtype.kind == "f" and arr.dtype != np.float32:
        return arr.astype(np.float32)
    return arr


# ---------------------------------------------------------------------------------------------
# torch zip format


@dataclass(frozen=True, slots=True)
class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co.: only records the element dtype."""

    name: str
    dtype: np.dtype[Any]
    bfloat16: bool = False


_STORAGE_TYPES: dict[str, _StorageType] = {
    "FloatStorage": _StorageType("FloatStorage", np.dtype("<f4")),
    "DoubleStorage": _StorageType("DoubleStorage", np.dtype("<f8")),
    "HalfStorage": _StorageType("HalfStorage", np.dtype("<f2")),
    # numpy has no bfloat16: read the raw 16-bit patterns and widen them.
    "BFloat16Storage": _StorageType("BFloat16Storage", np.dtype("<u2"), bfloat16=True),
    "LongStorage": _StorageType("LongStorage", np.dtype("<i8")),
    "IntStorage": _StorageType("IntStorage", np.dtype("<i4")),
    "ShortStorage": _StorageType("ShortStorage", np.dtype("<i2")),
    "CharStorage": _StorageType("CharStorage", np.dtype("i1")),
    "ByteStorage": _StorageType("ByteStorage", np.dtype("u1")),
    "BoolStorage": _StorageType("BoolStorage", np.dtype("?")),
}


def _rebuild_tensor_v2(
    storage: Array,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    *_ignored: Any,
) -> Array:
    """numpy version of ``torch._utils._rebuild_tensor_v2``: a strided view of a storage, copied.

    Bounds are checked before ``as_strided`` because a crafted offset/stride would otherwise
    make numpy read outside the storage buffer.
    """
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise CheckpointError("tensor does not reference a storage")
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    offset = int(storage_offset)
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride) or offset < 0:
        raise CheckpointError(f"invalid tensor geometry size={size} stride={stride} offset={offset}")
    if math.prod(size) == 0:
        return np.empty(size, dtype=storage.dtype)
    last = offset + sum((n - 1) * st for n, st in zip(size, stride, strict=True))
    if last >= storage.shape[0]:
        raise CheckpointError(f"tensor extends past its storage ({last} >= {storage.shape[0]})")
    base = storage[offset:]
    view = np.lib.stride_tricks.as_strided(
        base, shape=size, strides=tuple(st * storage.itemsize for st in stride), writeable=False
    )
    return np.array(view, copy=True, order="C")


def _rebuild_parameter(data: Array, *_ignored: Any) -> Array:
    """``nn.Parameter`` wrapper: the data is all we need (requires_grad/hooks are irrelevant)."""
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    # A class is needed (not a function) because BUILD may set ``_metadata`` on the instance.
    ("collections", "OrderedDict"): OrderedDict,
    **{("torch", name): st for name, st in _STORAGE_TYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only state-dict globals and loads storages from the zip."""

    def __init__(self, data: bytes, load_storage: Callable[[_StorageType, str, int], Array]) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        """Return our numpy stand-in for an allowed global; refuse everything else."""
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"checkpoint pickle references {module}.{name}, which is not allowed in a state dict; "
                "refusing to load (it could execute code). Convert the checkpoint to safetensors."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        """Resolve ``('storage', type, key, location, numel)`` to the storage's numpy array."""
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"unexpected persistent id in checkpoint: {pid!r}")
        storage_type, key, _location, numel = pid[1], pid[2], pid[3], pid[4]
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
            raise UnsafeCheckpointError(f"unexpected storage reference in checkpoint: {pid!r}")
        return self._load_storage(storage_type, key, int(numel))


def read_torch_bin(path: Path) -> dict[str, Array]:
    """Load a torch zip-format state dict into numpy arrays (float tensors as float32).

    Raises :class:`UnsafeCheckpointError` if the pickle needs anything beyond tensors and
    (ordered) dicts, and :class:`CheckpointError` for the legacy pre-1.6 format.
    """
    if not zipfile.is_zipfile(path):
        # The legacy format interleaves several pickles with raw storages; supporting it safely
        # is not worth it for checkpoints that are years old.
        raise CheckpointError(
            f"{path} is not a torch zip checkpoint (legacy torch<1.6 serialisation is unsupported); "
            "re-save it with a recent torch or convert it to model.safetensors"
        )
    with zipfile.ZipFile(path) as zf:
        pkl_names = [n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(pkl_names) != 1:
            raise CheckpointError(f"{path}: expected exactly one data.pkl, found {pkl_names}")
        prefix = pkl_names[0][: -len("data.pkl")]
        names = set(zf.namelist())
        big_endian = False
        if f"{prefix}byteorder" in names:
            big_endian = zf.read(f"{prefix}byteorder").decode().strip() == "big"
        cache: dict[str, Array] = {}

        def load_storage(storage_type: _StorageType, key: str, numel: int) -> Array:
            # Storages may be shared between tensors (tied weights, views): read each once.
            if key in cache:
                return cache[key]
            entry = f"{prefix}data/{key}"
            if entry not in names:
                raise CheckpointError(f"{path}: storage {entry} missing")
            dtype = storage_type.dtype.newbyteorder(">") if big_endian else storage_type.dtype
            raw = zf.read(entry)
            if len(raw) % dtype.itemsize:
                raise CheckpointError(f"{path}: storage {key} size is not a multiple of its dtype")
            arr: Array = np.frombuffer(raw, dtype=dtype)
            if arr.shape[0] < numel:
                raise CheckpointError(f"{path}: storage {key} holds {arr.shape[0]} < {numel} elements")
            arr = arr.astype(storage_type.dtype.newbyteorder("="), copy=False)
            arr = _bf16_to_f32(arr) if storage_type.bfloat16 else _to_working_dtype(arr)
            cache[key] = arr
            return arr

        obj = _RestrictedUnpickler(zf.read(pkl_names[0]), load_storage).load()
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: top-level object is {type(obj).__name__}, not a state dict")
    out: dict[str, Array] = {}
    for key, value in obj.items():
        if isinstance(key, str) and isinstance(value, np.ndarray):
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# safetensors


_SAFETENSORS_DTYPES: dict[str, np.dtype[Any]] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # widened to float32 below
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


def read_safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """Return the parsed JSON header and the byte offset where tensor data starts."""
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) != 8:
            raise CheckpointError(f"{path}: too short for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_SAFETENSORS_HEADER:
            raise CheckpointError(f"{path}: implausible safetensors header length {n}")
        raw = fh.read(n)
    if len(raw) != n:
        raise CheckpointError(f"{path}: truncated safetensors header")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: safetensors header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header is not an object")
    return header, 8 + n


def read_safetensors(path: Path) -> dict[str, Array]:
    """Read every tensor of a ``.safetensors`` file (floats widened/narrowed to float32).

    The file is memory-mapped so a large checkpoint is not held twice; each tensor is copied out.
    """
    header, data_start = read_safetensors_header(path)
    file_size = path.stat().st_size
    data_len = file_size - data_start
    out: dict[str, Array] = {}
    if data_len <= 0:
        mm: Array = np.zeros(0, dtype=np.uint8)
    else:
        mm = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start, shape=(data_len,))
    try:
        for name, info in header.items():
            if name == "__metadata__":
                continue
            if not isinstance(info, dict):
                raise CheckpointError(f"{path}: bad header entry for {name}")
            dtype_name = info.get("dtype")
            if dtype_name not in _SAFETENSORS_DTYPES:
                raise CheckpointError(f"{path}: tensor {name} has unsupported dtype {dtype_name!r}")
            dtype = _SAFETENSORS_DTYPES[dtype_name]
            shape = tuple(int(s) for s in info.get("shape", []))
            begin, end = (int(x) for x in info.get("data_offsets", (-1, -1)))
            expected = math.prod(shape) * dtype.itemsize
            if any(s < 0 for s in shape) or not 0 <= begin <= end <= data_len or end - begin != expected:
                raise CheckpointError(f"{path}: tensor {name} has inconsistent offsets/shape")
            arr: Array = np.array(mm[begin:end]).view(dtype).reshape(shape)
            arr = arr.astype(dtype.newbyteorder("="), copy=False)
            arr = _bf16_to_f32(arr) if dtype_name == "BF16" else _to_working_dtype(arr)
            out[name] = arr
    finally:
        del mm
    return out


# ---------------------------------------------------------------------------------------------
# checkpoint folder


def find_weights_file(checkpoint_dir: Path) -> Path:
    """The weights file of a checkpoint folder, preferring safetensors over pickle."""
    for name in WEIGHT_FILE_NAMES:
        candidate = checkpoint_dir / name
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"no weights file ({', '.join(WEIGHT_FILE_NAMES)}) in {checkpoint_dir}")


def _read_any(path: Path) -> dict[str, Array]:
    """Dispatch on file name: safetensors, torch zip, or a sharded index of either."""
    if path.name.endswith(".index.json"):
        index = json.loads(path.read_text(encoding="utf-8"))
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{path}: no weight_map")
        merged: dict[str, Array] = {}
        for shard in sorted(set(weight_map.values())):
            shard_path = (path.parent / str(shard)).resolve()
            # Shard names come from the file; keep them inside the checkpoint folder.
            if shard_path.parent != path.parent.resolve():
                raise CheckpointError(f"{path}: shard {shard!r} escapes the checkpoint folder")
            merged.update(_read_any(shard_path))
        return merged
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    return read_torch_bin(path)


def normalize_bert_keys(raw: dict[str, Array]) -> dict[str, Array]:
    """Map checkpoint keys to bare ``BertModel`` names (``embeddings.*``, ``encoder.*``).

    Strips the ``bert.`` prefix used by ``BertFor*`` heads, renames TF-era ``gamma``/``beta``
    to ``weight``/``bias``, and drops what the encoder never uses (pooler, MLM/NSP heads,
    the ``position_ids`` buffer).
    """
    out: dict[str, Array] = {}
    for key, arr in raw.items():
        name = key.removeprefix("bert.")
        if not name.startswith(("embeddings.", "encoder.")) or name == "embeddings.position_ids":
            continue
        if name.endswith(".gamma"):
            name = name[: -len("gamma")] + "weight"
        elif name.endswith(".beta"):
            name = name[: -len("beta")] + "bias"
        if name in out:
            raise CheckpointError(f"duplicate weight {name} after key normalisation")
        out[name] = np.ascontiguousarray(arr)
    if "embeddings.word_embeddings.weight" not in out:
        raise CheckpointError("no BERT encoder weights found (embeddings.word_embeddings.weight missing)")
    return out


def load_checkpoint(checkpoint_dir: Path) -> dict[str, Array]:
    """Load and normalise the BERT encoder weights of ``checkpoint_dir`` as numpy arrays."""
    return normalize_bert_keys(_read_any(find_weights_file(checkpoint_dir)))

"""Torch-free checkpoint readers: safetensors parsing, the restricted unpickler, m3e-small."""

from __future__ import annotations

import json
import os
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval.encoders.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    find_weights_file,
    load_checkpoint,
    normalize_bert_keys,
    read_safetensors,
    read_torch_bin,
)
from retrieval.encoders.registry import M3E_SMALL

pytestmark = pytest.mark.unit


# --------------------------------------------------------------------------------------------
# safetensors


def write_safetensors(path: Path, tensors: dict[str, tuple[str, tuple[int, ...], bytes]]) -> None:
    """Hand-build a safetensors file: u64 LE header length, JSON header, raw data."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blob = b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [len(blob), len(blob) + len(data)],
        }
        blob += data
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + blob)


def test_safetensors_dtypes(tmp_path: Path) -> None:
    f32 = np.arange(6, dtype="<f4").reshape(2, 3)
    f16 = np.array([1.5, -2.0], dtype="<f2")
    # bf16 is the top 16 bits of an f32: 1.0 = 0x3F80, -3.0 = 0xC040
    bf16 = np.array([0x3F80, 0xC040], dtype="<u2")
    i64 = np.array([7, -1, 2**40], dtype="<i8")
    path = tmp_path / "model.safetensors"
    write_safetensors(
        path,
        {
            "a": ("F32", (2, 3), f32.tobytes()),
            "b": ("F16", (2,), f16.tobytes()),
            "c": ("BF16", (2,), bf16.tobytes()),
            "d": ("I64", (3,), i64.tobytes()),
            "e": ("F32", (0, 4), b""),
        },
    )
    out = read_safetensors(path)
    assert set(out) == {"a", "b", "c", "d", "e"}
    np.testing.assert_array_equal(out["a"], f32)
    assert out["a"].dtype == np.float32
    assert out["b"].dtype == np.float32
    np.testing.assert_array_equal(out["b"], [1.5, -2.0])
    assert out["c"].dtype == np.float32
    np.testing.assert_array_equal(out["c"], [1.0, -3.0])
    assert out["d"].dtype == np.int64
    np.testing.assert_array_equal(out["d"], i64)
    assert out["e"].shape == (0, 4)


def test_safetensors_rejects_offsets_past_the_data(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)  # only 8 of 16 bytes
    with pytest.raises(CheckpointError, match="inconsistent"):
        read_safetensors(path)


def test_safetensors_rejects_garbage_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 5) + b"nope!")
    with pytest.raises(CheckpointError, match="not JSON"):
        read_safetensors(path)


# --------------------------------------------------------------------------------------------
# torch zip format, written without torch by faking the few globals a state dict references


class _FakeStorage:
    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key, self.data = key, data


class _FakeTensor:
    def __init__(self, storage: _FakeStorage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        self.args: tuple[Any, ...] = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self) -> tuple[Any, ...]:
        return (sys.modules["torch._utils"]._rebuild_tensor_v2, self.args)


@pytest.fixture
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Stand-in ``torch`` / ``torch._utils`` modules so pickle emits the real global names."""
    torch_mod = types.ModuleType("torch")
    utils_mod = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args: Any) -> None:  # pragma: no cover - never called
        raise AssertionError

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    float_storage = type("FloatStorage", (), {"__module__": "torch"})
    torch_mod.FloatStorage = float_storage  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)
    return torch_mod


def write_torch_zip(path: Path, state: dict[str, Any], storages: list[_FakeStorage], torch_mod: Any) -> None:
    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            if isinstance(obj, _FakeStorage):
                return ("storage", torch_mod.FloatStorage, obj.key, "cpu", obj.data.size)
            return None

    import io

    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        for s in storages:
            zf.writestr(f"archive/data/{s.key}", s.data.astype("<f4").tobytes())


def test_torch_zip_offsets_strides_and_shared_storage(tmp_path: Path, fake_torch: types.ModuleType) -> None:
    base = np.arange(12, dtype=np.float32)
    storage = _FakeStorage("0", base)
    state = OrderedDict(
        [
            ("bert.embeddings.word_embeddings.weight", _FakeTensor(storage, 0, (3, 4), (4, 1))),
            # A transposed view of the same storage (stride (1, 4)), and a slice with an offset.
            ("transposed", _FakeTensor(storage, 0, (4, 3), (1, 4))),
            ("tail", _FakeTensor(storage, 8, (4,), (1,))),
        ]
    )
    path = tmp_path / "pytorch_model.bin"
    write_torch_zip(path, state, [storage], fake_torch)
    out = read_torch_bin(path)
    np.testing.assert_array_equal(out["bert.embeddings.word_embeddings.weight"], base.reshape(3, 4))
    np.testing.assert_array_equal(out["transposed"], base.reshape(3, 4).T)
    np.testing.assert_array_equal(out["tail"], [8, 9, 10, 11])
    assert out["transposed"].flags.c_contiguous  # copied out of the strided view


def test_torch_zip_rejects_geometry_outside_storage(tmp_path: Path, fake_torch: types.ModuleType) -> None:
    storage = _FakeStorage("0", np.arange(4, dtype=np.float32))
    path = tmp_path / "pytorch_model.bin"
    write_torch_zip(path, {"w": _FakeTensor(storage, 2, (4,), (1,))}, [storage], fake_torch)
    with pytest.raises(CheckpointError, match="past its storage"):
        read_torch_bin(path)


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned > /dev/null",))


class _EvilExec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec"])
def test_restricted_unpickler_rejects_code_execution(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "pwned"
    payload = {"w": _Evil()} if kind == "os.system" else {"w": _EvilExec(marker)}
    path = tmp_path / "pytorch_model.bin"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(payload, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match="not allowed"):
        read_torch_bin(path)
    assert not marker.exists()


def test_legacy_torch_format_gets_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + b"rest")
    with pytest.raises(CheckpointError, match="legacy"):
        read_torch_bin(path)


# --------------------------------------------------------------------------------------------
# key normalisation and the real m3e-small checkpoint


def test_normalize_bert_keys() -> None:
    one = np.ones(2, dtype=np.float32)
    out = normalize_bert_keys(
        {
            "bert.embeddings.word_embeddings.weight": one,
            "bert.embeddings.position_ids": np.arange(2),
            "bert.encoder.layer.0.output.LayerNorm.gamma": one,
            "bert.encoder.layer.0.output.LayerNorm.beta": one,
            "bert.pooler.dense.weight": one,
            "cls.predictions.bias": one,
        }
    )
    assert set(out) == {
        "embeddings.word_embeddings.weight",
        "encoder.layer.0.output.LayerNorm.weight",
        "encoder.layer.0.output.LayerNorm.bias",
    }


def test_normalize_bert_keys_requires_embeddings() -> None:
    with pytest.raises(CheckpointError, match="no BERT encoder weights"):
        normalize_bert_keys({"classifier.weight": np.ones(1)})


def test_m3e_small_bin_loads_with_expected_shapes() -> None:
    ckpt = M3E_SMALL.checkpoint_dir()
    assert find_weights_file(ckpt).name == "pytorch_model.bin"
    weights = load_checkpoint(ckpt)
    assert weights["embeddings.word_embeddings.weight"].shape == (21128, 512)
    assert weights["embeddings.position_embeddings.weight"].shape == (512, 512)
    assert weights["embeddings.token_type_embeddings.weight"].shape == (2, 512)
    for i in range(4):
        assert weights[f"encoder.layer.{i}.attention.self.query.weight"].shape == (512, 512)
        assert weights[f"encoder.layer.{i}.intermediate.dense.weight"].shape == (2048, 512)
        assert weights[f"encoder.layer.{i}.output.dense.weight"].shape == (512, 2048)
    assert "encoder.layer.4.attention.self.query.weight" not in weights
    assert not any(k.startswith("pooler.") for k in weights)
    assert "embeddings.position_ids" not in weights
    assert all(w.dtype == np.float32 for w in weights.values())
    assert len(weights) == 5 + 4 * 16

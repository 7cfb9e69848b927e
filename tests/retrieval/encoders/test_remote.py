"""Remote encoders against a real HTTP embedding service (see `embedding_server.py`)."""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
import pytest

from retrieval.encoders.factory import remote_encoder
from retrieval.encoders.ollama import OllamaEncoder
from retrieval.encoders.openai_compat import OpenAICompatEncoder
from retrieval.encoders.pooling import l2_normalize
from retrieval.encoders.protocol import Encoder
from retrieval.encoders.remote import (
    EncoderRequestError,
    EncoderResponseError,
    RemoteEncoder,
)
from retrieval.encoders.remote_config import RemoteEncoderConfig
from retrieval.errors import EncoderUnavailable
from tests.retrieval.encoders.embedding_server import EmbeddingServer

pytestmark = pytest.mark.integration

PROVIDERS = ["ollama", "openai"]
TEXTS = ["萧炎的斗气", "药老是谁", "云岚宗", "纳兰嫣然退婚", "异火榜第一", "加玛帝国", "魂殿", "古族"]
KEY = "sk-test-0123456789abcdef"

EncoderFactory = Callable[..., RemoteEncoder]


@pytest.fixture
def server() -> Iterator[EmbeddingServer]:
    with EmbeddingServer(dim=24, ollama_models=["qwen3-embedding:0.6b", "nomic-embed-text:latest"]) as srv:
        yield srv


@pytest.fixture
async def make_encoder(server: EmbeddingServer) -> AsyncIterator[EncoderFactory]:
    """Build encoders against `server` with fast retries; all are closed after the test."""
    made: list[RemoteEncoder] = []

    def make(provider: str = "ollama", **overrides: Any) -> RemoteEncoder:
        fields: dict[str, Any] = {
            "provider": provider,
            "base_url": server.base_url,
            "model": server.ollama_models[0] if provider == "ollama" else server.openai_models[0],
            "timeout_s": 2.0,
            "connect_timeout_s": 1.0,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
        }
        encoder = remote_encoder(RemoteEncoderConfig(**(fields | overrides)))
        made.append(encoder)
        return encoder

    yield make
    for encoder in made:
        await encoder.close()


def expected(server: EmbeddingServer, texts: list[str]) -> np.ndarray:
    return l2_normalize(np.array([server.vector(t) for t in texts], dtype=np.float32))


# -- wire formats ---------------------------------------------------------------------------------


async def test_ollama_encoder_returns_normalised_server_vectors(
    server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    encoder = make_encoder("ollama")
    assert isinstance(encoder, OllamaEncoder)
    vectors = await encoder.encode_queries(TEXTS[:3])
    assert isinstance(encoder, Encoder)  # (reads `dim`, known only once the service has answered)
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, 24)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(vectors, expected(server, TEXTS[:3]), rtol=1e-6)
    # The server's vectors are counts, far from unit length: the client did the normalising.
    assert np.linalg.norm(server.vector(TEXTS[0])) > 2
    (request,) = server.embed_requests
    assert request.body == {"model": "qwen3-embedding:0.6b", "input": TEXTS[:3]}
    assert encoder.model_id == "ollama/qwen3-embedding:0.6b"


async def test_ollama_single_embedding_reply_shape_is_accepted(
    server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    server.ollama_shape = "embedding"
    encoder = make_encoder("ollama", max_batch=1)
    vectors = await encoder.encode_passages(TEXTS[:3])
    np.testing.assert_allclose(vectors, expected(server, TEXTS[:3]), rtol=1e-6)
    assert server.batch_sizes == [1, 1, 1]


async def test_single_embedding_shape_for_a_batch_is_an_error_not_a_crash(
    server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    server.ollama_shape = "embedding"
    encoder = make_encoder("ollama")
    with pytest.raises(EncoderResponseError, match="1 embedding"):
        await encoder.encode_passages(TEXTS[:3])


async def test_openai_rows_are_put_in_input_order_by_index(
    server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    server.openai_reversed = True
    encoder = make_encoder("openai", api_key=KEY)
    assert isinstance(encoder, OpenAICompatEncoder)
    vectors = await encoder.encode_passages(TEXTS[:5])
    np.testing.assert_allclose(vectors, expected(server, TEXTS[:5]), rtol=1e-6)
    (request,) = server.embed_requests
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body["input"] == TEXTS[:5]
    assert request.body["model"] == "text-embedding-3-small"
    assert encoder.model_id == "openai/text-embedding-3-small"


async def test_openai_base_url_may_end_in_v1(server: EmbeddingServer, make_encoder: EncoderFactory) -> None:
    encoder = make_encoder("openai", base_url=server.base_url + "/v1/")
    assert (await encoder.encode_queries(["斗破苍穹"])).shape == (1, 24)
    assert [r.path for r in server.requests] == ["/v1/embeddings"]


async def test_query_prefix_is_sent_with_queries_only(
    server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    encoder = make_encoder("ollama", query_prefix="Query: ", passage_prefix="")
    await encoder.encode_queries(["萧炎"])
    await encoder.encode_passages(["萧炎"])
    assert [r.inputs for r in server.embed_requests] == [["Query: 萧炎"], ["萧炎"]]


async def test_input_type_field_carries_query_or_passage_and_no_prefix(
    server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    encoder = make_encoder("openai", input_type_field="input_type", passage_input_type="document")
    assert await encoder.ready()  # the dimension probe is a query
    await encoder.encode_queries(["萧炎"])
    await encoder.encode_passages(["萧炎", "药老"])
    sent = [(r.body["input"], r.body["input_type"]) for r in server.embed_requests]
    assert sent == [(["维度"], "query"), (["萧炎"], "query"), (["萧炎", "药老"], "document")]


async def test_no_input_type_field_unless_configured(
    server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    encoder = make_encoder("openai")
    await encoder.encode_queries(["萧炎"])
    await encoder.encode_passages(["萧炎"])
    assert [sorted(r.body) for r in server.embed_requests] == [["encoding_format", "input", "model"]] * 2


# -- batching and concurrency ---------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_large_inputs_are_split_into_max_batch_requests_in_order(
    provider: str, server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    texts = [f"{t}{i}" for i, t in enumerate(TEXTS * 3)][:22]
    encoder = make_encoder(provider, max_batch=5)
    vectors = await encoder.encode_passages(texts)
    np.testing.assert_allclose(vectors, expected(server, texts), rtol=1e-6)
    assert sorted(server.batch_sizes) == [2, 5, 5, 5, 5]
    # Every text was sent exactly once.
    assert sorted(t for r in server.embed_requests for t in r.inputs) == sorted(texts)


async def test_in_flight_requests_never_exceed_the_concurrency_limit(
    server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    server.delay_s = 0.05
    encoder = make_encoder("ollama", max_batch=1, concurrency=2)
    results = await asyncio.gather(encoder.encode_passages(TEXTS), encoder.encode_queries(TEXTS[:4]))
    assert [r.shape for r in results] == [(8, 24), (4, 24)]
    assert len(server.embed_requests) == 12
    # Exactly 2: never more, and the limit is not a disguised serialisation either.
    assert server.max_in_flight == 2


# -- retries and errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_5xx_is_retried_until_success(
    provider: str, server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    server.fail_next(1, status=500)
    server.fail_next(1, status=503)
    encoder = make_encoder(provider, max_attempts=3)
    vectors = await encoder.encode_queries(TEXTS[:2])
    np.testing.assert_allclose(vectors, expected(server, TEXTS[:2]), rtol=1e-6)
    assert len(server.embed_requests) == 3


async def test_429_is_retried_honouring_retry_after(
    server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    server.fail_next(1, status=429, retry_after=0.2)
    encoder = make_encoder("openai", max_attempts=2)
    started = time.perf_counter()
    await encoder.encode_queries(["斗气化翼"])
    assert time.perf_counter() - started >= 0.05  # waited for Retry-After (capped at backoff_max_s)
    assert len(server.embed_requests) == 2


async def test_persistent_5xx_gives_up_as_unavailable_after_max_attempts(
    server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    server.fail_next(10, status=503)
    encoder = make_encoder("ollama", max_attempts=3)
    with pytest.raises(EncoderUnavailable, match="after 3 attempt"):
        await encoder.encode_queries(["萧炎"])
    assert len(server.embed_requests) == 3


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_400_is_not_retried_and_carries_the_service_message(
    provider: str, server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    server.reject_next(400, "input length exceeds the context length")
    encoder = make_encoder(provider, max_attempts=5)
    with pytest.raises(EncoderRequestError, match="exceeds the context length") as caught:
        await encoder.encode_passages(TEXTS[:2])
    assert caught.value.status_code == 400
    assert not isinstance(caught.value, EncoderUnavailable)
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)  # crosses processes
    assert len(server.embed_requests) == 1


async def test_400_in_one_batch_fails_the_whole_call(
    server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    server.reject_next(400, "bad input")
    encoder = make_encoder("ollama", max_batch=2, concurrency=1)
    with pytest.raises(EncoderRequestError):
        await encoder.encode_passages(TEXTS)
    # The remaining batches were cancelled rather than sent for nothing.
    assert len(server.embed_requests) < 4


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_unknown_model_is_a_request_error_and_not_ready(
    provider: str, server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    encoder = make_encoder(provider, model="no-such-model")
    assert await encoder.ready() is False
    with pytest.raises(EncoderRequestError, match="no-such-model") as caught:
        await encoder.encode_queries(["萧炎"])
    assert caught.value.status_code == 404


async def test_wrong_api_key_is_401_once_and_the_key_is_not_echoed(
    server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    server.api_key = "sk-the-right-one"
    encoder = make_encoder("openai", api_key=KEY, max_attempts=3)
    with pytest.raises(EncoderRequestError) as caught:
        await encoder.encode_queries(["萧炎"])
    assert caught.value.status_code == 401
    assert "Incorrect API key" in str(caught.value)
    assert KEY not in str(caught.value)  # the server echoed it; the client must not
    assert len(server.embed_requests) == 1
    assert await encoder.ready() is False
    good = make_encoder("openai", api_key="sk-the-right-one")
    assert await good.ready() is True


@pytest.mark.parametrize("kind", ["count", "ragged", "nan", "not_json", "no_vectors"])
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_malformed_replies_raise_a_clear_unavailable_error(
    provider: str, kind: Any, server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    server.corrupt_next(1, kind)
    encoder = make_encoder(provider)
    with pytest.raises(EncoderResponseError) as caught:
        await encoder.encode_passages(TEXTS[:3])
    assert isinstance(caught.value, EncoderUnavailable)  # so the pipeline degrades
    assert server.base_url in str(caught.value)


async def test_slow_replies_time_out_as_unavailable_within_a_bounded_time(
    server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    server.delay_s = 10.0
    encoder = make_encoder("ollama", timeout_s=0.2, max_attempts=2)
    started = time.perf_counter()
    with pytest.raises(EncoderUnavailable, match="timed out"):
        await encoder.encode_queries(["萧炎"])
    elapsed = time.perf_counter() - started
    # 2 attempts x 0.2 s plus at most 0.05 s of backoff; generous slack for a loaded machine.
    assert 0.35 < elapsed < 2.0
    assert len(server.embed_requests) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_service_down_then_back(
    provider: str, server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    encoder = make_encoder(provider, max_attempts=2)
    assert await encoder.ready() is True
    await encoder.encode_queries(["萧炎"])  # leaves a pooled keep-alive connection behind

    server.stop()
    assert await encoder.ready() is False
    with pytest.raises(EncoderUnavailable, match="connection failed"):
        await encoder.encode_queries(["萧炎"])

    server.start()
    assert await encoder.ready() is True
    vectors = await encoder.encode_queries(["萧炎"])
    np.testing.assert_allclose(vectors, expected(server, ["萧炎"]), rtol=1e-6)


# -- dimension, health, normalisation -------------------------------------------------------------


async def test_dimension_is_discovered_by_ready_with_one_probe(
    server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    encoder = make_encoder("ollama")
    with pytest.raises(EncoderUnavailable, match="dimension unknown"):
        _ = encoder.dim
    results = await asyncio.gather(*(encoder.ready() for _ in range(3)))
    assert results == [True, True, True]
    assert encoder.dim == 24
    assert len(server.embed_requests) == 1  # concurrent health checks shared one probe
    assert await encoder.ready() is True
    assert len(server.embed_requests) == 1  # once known, health checks do not embed


async def test_dimension_is_learnt_from_the_first_encode(make_encoder: EncoderFactory) -> None:
    encoder = make_encoder("openai")
    await encoder.encode_passages(["萧炎"])
    assert encoder.dim == 24
    empty = await encoder.encode_queries([])
    assert empty.shape == (0, 24)
    assert empty.dtype == np.float32


async def test_empty_input_discovers_the_dimension(
    server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    encoder = make_encoder("ollama")
    assert (await encoder.encode_queries([])).shape == (0, 24)
    assert await encoder.discover_dim() == 24
    assert len(server.embed_requests) == 1


async def test_configured_dimension_is_reported_early_and_enforced(make_encoder: EncoderFactory) -> None:
    encoder = make_encoder("ollama", dim=32)
    assert encoder.dim == 32
    with pytest.raises(EncoderResponseError, match="dimension 24, expected 32"):
        await encoder.encode_queries(["萧炎"])


@pytest.mark.parametrize("model", ["nomic-embed-text", "nomic-embed-text:latest"])
async def test_ollama_ready_tolerates_latest_suffix(model: str, make_encoder: EncoderFactory) -> None:
    assert await make_encoder("ollama", model=model).ready() is True


async def test_normalisation_can_be_switched_off(
    server: EmbeddingServer, make_encoder: EncoderFactory
) -> None:
    encoder = make_encoder("openai", normalize=False)
    vectors = await encoder.encode_queries(TEXTS[:2])
    np.testing.assert_array_equal(vectors, np.array([server.vector(t) for t in TEXTS[:2]], np.float32))


async def test_closed_encoder_is_unavailable(make_encoder: EncoderFactory) -> None:
    encoder = make_encoder("ollama")
    await encoder.close()
    await encoder.close()  # idempotent
    assert await encoder.ready() is False
    with pytest.raises(EncoderUnavailable, match="closed"):
        await encoder.encode_queries(["萧炎"])


async def test_unreachable_port_is_unavailable(make_encoder: EncoderFactory) -> None:
    probe = EmbeddingServer().start()
    url = probe.base_url
    probe.stop()  # nothing listens there now
    encoder = make_encoder("ollama", base_url=url, max_attempts=2)
    assert await encoder.ready() is False
    with pytest.raises(EncoderUnavailable):
        await encoder.encode_passages(["萧炎"])


# -- secrets --------------------------------------------------------------------------------------


async def test_api_key_stays_out_of_reprs_and_logs(
    server: EmbeddingServer, make_encoder: EncoderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    encoder = make_encoder("openai", api_key=KEY)
    server.fail_next(1, status=503)
    await encoder.encode_queries(["萧炎"])  # one logged retry
    basic = make_encoder("ollama", base_url=f"http://user:pw-secret@{server.base_url[7:]}")
    await basic.encode_queries(["萧炎"])
    assert server.requests[-1].headers["authorization"].startswith("Basic ")
    server.api_key = KEY
    bad = make_encoder("openai", api_key=KEY + "-wrong")
    with pytest.raises(EncoderRequestError) as caught:
        await bad.encode_queries(["萧炎"])
    await bad.ready()  # logs why it is not ready

    assert "retrying" in caplog.text
    assert "not ready" in caplog.text
    shown = [repr(encoder), repr(encoder.config), str(encoder.config), repr(basic), repr(basic.config)]
    for text in (*shown, caplog.text, str(caught.value)):
        assert KEY not in text
        assert "pw-secret" not in text
    assert "***" in repr(encoder)
    assert "***" in repr(encoder.config)

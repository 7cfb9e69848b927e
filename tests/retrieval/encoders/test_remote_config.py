"""`RemoteEncoderConfig` validation and reading it from ``EMBEDDING_*`` variables."""

from __future__ import annotations

from typing import Any

import pytest

from retrieval.encoders.factory import remote_encoder
from retrieval.encoders.ollama import OllamaEncoder
from retrieval.encoders.openai_compat import OpenAICompatEncoder
from retrieval.encoders.remote_config import RemoteEncoderConfig, remote_config_from_env

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("environ", [{}, {"EMBEDDING_PROVIDER": "local"}, {"EMBEDDING_PROVIDER": " LOCAL "}])
def test_local_or_unset_provider_means_no_remote_encoder(environ: dict[str, str]) -> None:
    assert remote_config_from_env({**environ, "EMBEDDING_API_URL": "http://ignored:1"}) is None


def test_ollama_defaults() -> None:
    config = remote_config_from_env({"EMBEDDING_PROVIDER": "ollama"})
    assert config is not None
    assert (config.provider, config.base_url, config.model) == (
        "ollama",
        "http://127.0.0.1:11434",
        "qwen3-embedding:0.6b",
    )
    assert config.api_key == ""
    assert (config.max_attempts, config.max_batch, config.concurrency, config.dim) == (3, 32, 4, None)


def test_openai_defaults_and_key() -> None:
    config = remote_config_from_env({"EMBEDDING_PROVIDER": "openai", "EMBEDDING_API_KEY": "sk-x"})
    assert config is not None
    assert (config.base_url, config.model, config.api_key) == (
        "https://api.openai.com",
        "text-embedding-3-small",
        "sk-x",
    )


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({"EMBEDDING_API_HOST": "ollama", "EMBEDDING_API_PORT": "8080"}, "http://ollama:8080"),
        ({"EMBEDDING_API_HOST": "gpu-box"}, "http://gpu-box:11434"),
        ({"EMBEDDING_API_PORT": "9999"}, "http://127.0.0.1:9999"),
        ({"EMBEDDING_API_HOST": "::1", "EMBEDDING_API_PORT": "1"}, "http://[::1]:1"),
        # The full URL wins over host and port.
        (
            {"EMBEDDING_API_URL": "https://emb.example/ollama", "EMBEDDING_API_HOST": "x"},
            "https://emb.example/ollama",
        ),
    ],
)
def test_base_url_from_url_or_host_and_port(environ: dict[str, str], url: str) -> None:
    config = remote_config_from_env({"EMBEDDING_PROVIDER": "ollama", **environ})
    assert config is not None
    assert config.base_url == url


def test_openai_host_without_port_has_no_port() -> None:
    config = remote_config_from_env({"EMBEDDING_PROVIDER": "openai", "EMBEDDING_API_HOST": "vllm"})
    assert config is not None
    assert config.base_url == "http://vllm"


def test_tuning_variables() -> None:
    config = remote_config_from_env(
        {
            "EMBEDDING_PROVIDER": "OpenAI",
            "EMBEDDING_API_URL": "http://vllm:8000/v1",
            "EMBEDDING_API_MODEL": "BAAI/bge-m3",
            "EMBEDDING_API_TIMEOUT_S": "1.5",
            "EMBEDDING_API_MAX_BATCH": "64",
            "EMBEDDING_API_CONCURRENCY": "8",
            "EMBEDDING_API_RETRIES": "0",
            "EMBEDDING_API_DIM": "1024",
            "EMBEDDING_API_KEY": "",  # empty counts as unset
        }
    )
    assert config == RemoteEncoderConfig(
        provider="openai",
        base_url="http://vllm:8000/v1",
        model="BAAI/bge-m3",
        timeout_s=1.5,
        connect_timeout_s=1.5,  # never longer than the read timeout
        max_batch=64,
        concurrency=8,
        max_attempts=1,  # zero retries: one attempt
        dim=1024,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EMBEDDING_PROVIDER", "huggingface"),
        ("EMBEDDING_API_URL", "ftp://host/"),
        ("EMBEDDING_API_URL", "localhost:11434"),
        ("EMBEDDING_API_HOST", "http://host"),
        ("EMBEDDING_API_PORT", "eleven"),
        ("EMBEDDING_API_PORT", "70000"),
        ("EMBEDDING_API_PORT", "0"),
        ("EMBEDDING_API_TIMEOUT_S", "fast"),
        ("EMBEDDING_API_TIMEOUT_S", "0"),
        ("EMBEDDING_API_TIMEOUT_S", "inf"),
        ("EMBEDDING_API_TIMEOUT_S", "nan"),
        ("EMBEDDING_API_MAX_BATCH", "0"),
        ("EMBEDDING_API_MAX_BATCH", "2.5"),
        ("EMBEDDING_API_CONCURRENCY", "-1"),
        ("EMBEDDING_API_RETRIES", "-1"),
        ("EMBEDDING_API_DIM", "0"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    environ = {"EMBEDDING_PROVIDER": "ollama", name: value}
    with pytest.raises(ValueError, match=name):
        remote_config_from_env(environ)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, ("", "query", "passage")),
        ({"EMBEDDING_API_INPUT_TYPE": "none"}, ("", "query", "passage")),
        ({"EMBEDDING_API_INPUT_TYPE": "input_type"}, ("input_type", "query", "passage")),
        (
            {"EMBEDDING_API_INPUT_TYPE": "input_type", "EMBEDDING_API_PASSAGE_TYPE": "document"},
            ("input_type", "query", "document"),
        ),
        (
            {
                "EMBEDDING_API_INPUT_TYPE": "task",
                "EMBEDDING_API_QUERY_TYPE": "retrieval.query",
                "EMBEDDING_API_PASSAGE_TYPE": "retrieval.passage",
            },
            ("task", "retrieval.query", "retrieval.passage"),
        ),
    ],
)
def test_input_type_variables(environ: dict[str, str], expected: tuple[str, str, str]) -> None:
    config = remote_config_from_env({"EMBEDDING_PROVIDER": "openai", **environ})
    assert config is not None
    assert (config.input_type_field, config.query_input_type, config.passage_input_type) == expected


@pytest.mark.parametrize(
    ("provider", "environ", "name"),
    [
        # Ollama's /api/embed has no field for it.
        ("ollama", {"EMBEDDING_API_INPUT_TYPE": "input_type"}, "EMBEDDING_API_INPUT_TYPE"),
        ("openai", {"EMBEDDING_API_INPUT_TYPE": "model"}, "EMBEDDING_API_INPUT_TYPE"),
        ("openai", {"EMBEDDING_API_INPUT_TYPE": "input type"}, "EMBEDDING_API_INPUT_TYPE"),
        (
            "openai",
            {"EMBEDDING_API_INPUT_TYPE": "input_type", "EMBEDDING_API_PASSAGE_TYPE": "query"},
            "EMBEDDING_API_INPUT_TYPE",
        ),
        ("openai", {"EMBEDDING_API_QUERY_TYPE": "query"}, "EMBEDDING_API_QUERY_TYPE"),
        ("openai", {"EMBEDDING_API_PASSAGE_TYPE": "document"}, "EMBEDDING_API_PASSAGE_TYPE"),
    ],
)
def test_bad_input_type_variables_name_the_variable(
    provider: str, environ: dict[str, str], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        remote_config_from_env({"EMBEDDING_PROVIDER": provider, **environ})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"provider": "cohere"}, "provider"),
        ({"input_type_field": "input_type"}, "ollama takes no input type"),
        ({"provider": "openai", "input_type_field": "encoding_format"}, "input_type_field"),
        (
            {"provider": "openai", "input_type_field": "input_type", "query_input_type": " "},
            "query_input_type",
        ),
        (
            {"provider": "openai", "input_type_field": "input_type", "query_prefix": "query: "},
            "not both",
        ),
        ({"base_url": "127.0.0.1:11434"}, "base_url"),
        ({"base_url": "http://h:1/?key=x"}, "query"),
        ({"base_url": "http://u:p@h:1", "api_key": "k"}, "not both"),
        ({"model": " "}, "model"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"connect_timeout_s": float("nan")}, "connect_timeout_s"),
        ({"max_batch": 0}, "max_batch"),
        ({"max_batch": True}, "max_batch"),
        ({"concurrency": 0}, "concurrency"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"backoff_base_s": -1.0}, "backoff_base_s"),
        ({"backoff_max_s": 0.01, "backoff_base_s": 1.0}, "backoff_max_s"),
        ({"dim": 0}, "dim"),
    ],
)
def test_config_rejects_bad_values(overrides: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"provider": "ollama", "base_url": "http://h:1", "model": "m"}
    with pytest.raises(ValueError, match=message):
        RemoteEncoderConfig(**(fields | overrides))


def test_config_repr_hides_secrets() -> None:
    config = RemoteEncoderConfig("openai", "https://user:hunter2@emb.example", "m")
    keyed = RemoteEncoderConfig("openai", "https://emb.example", "m", api_key="sk-secret")
    assert "hunter2" not in repr(config)
    assert "user" not in repr(config)
    assert "sk-secret" not in repr(keyed)
    assert "api_key='***'" in repr(keyed)


async def test_factory_picks_the_encoder_for_the_provider() -> None:
    for provider, cls in (("ollama", OllamaEncoder), ("openai", OpenAICompatEncoder)):
        config = remote_config_from_env({"EMBEDDING_PROVIDER": provider})
        assert config is not None
        encoder = remote_encoder(config)
        try:
            assert type(encoder) is cls
            assert encoder.model_id == f"{provider}/{config.model}"
        finally:
            await encoder.close()

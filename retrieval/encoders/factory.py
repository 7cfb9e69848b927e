"""Choosing a remote encoder: the one a `RemoteEncoderConfig` names.

The configuration, and reading it from ``EMBEDDING_*`` variables (`remote_config_from_env`), live
in `retrieval.encoders.remote_config`, which needs no HTTP client.
"""

from __future__ import annotations

from retrieval.encoders.ollama import OllamaEncoder
from retrieval.encoders.openai_compat import OpenAICompatEncoder
from retrieval.encoders.remote import RemoteEncoder
from retrieval.encoders.remote_config import RemoteEncoderConfig


def remote_encoder(config: RemoteEncoderConfig) -> RemoteEncoder:
    """The encoder for `config.provider`; it satisfies the `Encoder` protocol."""
    if config.provider == "ollama":
        return OllamaEncoder(config)
    if config.provider == "openai":
        return OpenAICompatEncoder(config)
    # RemoteEncoderConfig already rejects unknown providers; this guards a future PROVIDERS entry.
    raise ValueError(f"no remote encoder for provider {config.provider!r}")

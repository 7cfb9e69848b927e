"""Ollama's native embedding API: ``POST /api/embed`` and ``GET /api/tags``."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from retrieval.encoders.remote import RemoteEncoder

logger = logging.getLogger(__name__)


def _model_name(name: str) -> str:
    # Ollama resolves "m" to "m:latest" and ignores case, so compare names the same way.
    return name.strip().lower().removesuffix(":latest")


class OllamaEncoder(RemoteEncoder):
    """Embeddings from an Ollama server (e.g. ``qwen3-embedding:0.6b``).

    Accepts both reply shapes: ``{"embeddings": [[...], ...]}`` (current ``/api/embed``) and the
    single ``{"embedding": [...]}`` that older servers and some proxies send for one input. Ready
    only when ``/api/tags`` lists the configured model, matched by ``name`` or ``model`` with an
    optional ``:latest`` suffix; a model that is not pulled would fail every request with 404.
    """

    provider = "ollama"
    embed_path = "/api/embed"
    health_path = "/api/tags"

    def _embed_body(self, texts: list[str], kind: str) -> dict[str, Any]:
        # /api/embed has no query/passage field: the distinction travels as prefixes, if at all.
        return {"model": self.config.model, "input": texts}

    def _parse_embeddings(self, payload: Any, expected: int) -> list[Any]:
        if not isinstance(payload, dict):
            raise self._malformed("reply is not a JSON object")
        if "embeddings" in payload:
            rows = payload["embeddings"]
            if not isinstance(rows, list):
                raise self._malformed("'embeddings' is not a list")
        elif "embedding" in payload:
            rows = [payload["embedding"]]
        else:
            raise self._malformed("reply has neither 'embeddings' nor 'embedding'")
        if len(rows) != expected:
            raise self._malformed(f"{len(rows)} embedding(s) for {expected} input(s)")
        return rows

    def _health_ok(self, response: httpx.Response) -> bool:
        payload = self._json(response)
        models = payload.get("models") if isinstance(payload, dict) else None
        if not isinstance(models, list):
            raise self._malformed("/api/tags reply has no 'models' list")
        wanted = _model_name(self.config.model)
        available = {
            _model_name(value)
            for entry in models
            if isinstance(entry, dict)
            for value in (entry.get("name"), entry.get("model"))
            if isinstance(value, str)
        }
        if wanted in available:
            return True
        logger.warning(
            "%s: model %r is not pulled on the Ollama server (available: %s)",
            self.model_id, self.config.model, ", ".join(sorted(available)) or "none",
        )  # fmt: skip
        return False

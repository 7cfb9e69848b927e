"""`POST /v1/documents` (batch upsert) and `DELETE /v1/documents/{doc_id}`."""

from __future__ import annotations

from litestar import Controller, delete, post
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK

from retrieval.documents import Document
from retrieval.knowledge_base import IngestReport
from retrieval.types import DOC_ID_PATTERN
from search_api.auth import admin_guard
from search_api.errors import ERROR_RESPONSES, ApiError, NotFound
from search_api.schemas import DocumentsRequest, DocumentsResponse
from search_api.state import AppState


def _reply(report: IngestReport, kb_version: int) -> DocumentsResponse:
    return DocumentsResponse(
        documents=report.documents,
        chunks=report.chunks,
        removed_chunks=report.removed_chunks,
        per_document=report.per_document,
        kb_version=kb_version,
    )


class DocumentsController(Controller):
    """Writes to the knowledge base (admin key required when configured)."""

    path = "/v1/documents"
    tags = ["documents"]
    guards = [admin_guard]

    @post(
        operation_id="upsertDocuments",
        status_code=HTTP_200_OK,
        summary="Upsert documents",
        responses=ERROR_RESPONSES,
    )
    async def upsert(self, data: DocumentsRequest, serving: NamedDependency[AppState]) -> DocumentsResponse:
        """Chunk, embed and index each document, replacing any earlier version of it."""
        limits = serving.settings.search
        max_chars = serving.settings.engine.data.max_document_chars
        if not data.documents:
            raise ApiError("documents must not be empty", code="empty_batch", field="documents")
        if len(data.documents) > limits.max_documents_per_request:
            raise ApiError(
                f"at most {limits.max_documents_per_request} documents per request",
                code="batch_too_large",
                field="documents",
            )
        docs = [
            Document(
                id=d.id,
                text=d.text,
                title=d.title,
                kind=d.kind,
                metadata=d.metadata,
                aliases=tuple(d.aliases),
            ).validate(max_chars)
            for d in data.documents
        ]
        kb = serving.require().kb
        report = await kb.ingest(docs)
        return _reply(report, kb.kb_version)

    @delete(
        "/{doc_id:str}",
        operation_id="deleteDocument",
        status_code=HTTP_200_OK,
        summary="Delete a document",
        responses=ERROR_RESPONSES,
    )
    async def remove(self, doc_id: str, serving: NamedDependency[AppState]) -> DocumentsResponse:
        """Remove a document and all its chunks; 404 when it is not stored."""
        if not DOC_ID_PATTERN.match(doc_id):
            raise ApiError("invalid document id", code="invalid_document_id", field="doc_id")
        kb = serving.require().kb
        report = await kb.delete([doc_id])
        if report.removed_chunks == 0:
            raise NotFound(f"document {doc_id!r} not found", code="document_not_found", field="doc_id")
        return _reply(report, kb.kb_version)

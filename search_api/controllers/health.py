"""Liveness and readiness."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from retrieval.service import SearchService
from search_api.schemas import Health, Readiness
from search_api.state import AppState


def ranking_status(service: SearchService) -> dict[str, object]:
    """Which fusion is configured and which is served: "learned" needs a ranker for the encoder."""
    ranker = service.ranker
    served = "learned" if service.fusion == "learned" and ranker is not None else "rrf"
    status: dict[str, object] = {"configured": service.fusion, "served": served}
    if ranker is not None:
        status["ranker"] = ranker.describe()
    elif service.fusion == "learned":
        status["detail"] = f"no ranker for {service.kb.encoder.model_id}: answering with RRF"
    return status


class HealthController(Controller):
    """`/v1/health` answers while the process lives; `/v1/ready` only when search can answer."""

    path = "/v1"
    tags = ["health"]

    @get("/health", operation_id="health", summary="Liveness")
    async def health(self) -> Health:
        """The process is up."""
        return Health()

    @get(
        "/ready",
        operation_id="ready",
        summary="Readiness",
        responses={
            503: ResponseSpec(data_container=Readiness, description="Not ready", generate_examples=False)
        },
    )
    async def ready(self, serving: NamedDependency[AppState]) -> Response[Readiness]:
        """Encoder, store and cache state; 503 until every one of them answers."""
        running = serving.engine
        if running is None:
            body = Readiness(
                ready=False,
                encoder={"ready": False},
                store={"ready": False},
                cache={"enabled": False},
                detail=f"engine is {serving.phase}" + (f": {serving.error}" if serving.error else ""),
            )
            return Response(body, status_code=HTTP_503_SERVICE_UNAVAILABLE)
        kb = running.kb
        encoder_ok = await kb.encoder.ready()
        store_ok = await kb.store.ready()
        store: dict[str, object] = {
            "ready": store_ok,
            "chunks": kb.stats.n_docs,
            "kb_version": kb.kb_version,
        }
        index = getattr(kb.store, "dense_index", None)
        if index:  # what dense search runs on: FLAT (exact), IVF_FLAT or HNSW, with its parameters
            store["index"] = index
        breaker = getattr(kb.store, "breaker", None)
        if breaker is not None:  # open while Milvus is unreachable: searches get 503 at once
            store["circuit"] = breaker.state.value
        # An encoder outage degrades search to BM25 but does not stop it: still ready, flagged.
        body = Readiness(
            ready=store_ok,
            degraded=not encoder_ok,
            encoder={"ready": encoder_ok, "model_id": kb.encoder.model_id, "dim": kb.encoder.dim},
            store=store,
            cache=await running.cache.status() if running.cache is not None else {"enabled": False},
            ranking=ranking_status(running.service),
            detail=None if store_ok else "the vector store (Milvus) is unreachable",
        )
        return Response(body, status_code=HTTP_200_OK if body.ready else HTTP_503_SERVICE_UNAVAILABLE)

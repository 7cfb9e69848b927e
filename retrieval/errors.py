"""One error hierarchy for the engine: every error a caller can act on carries a stable `code`.

The HTTP layer maps an error to a response by reading `code`, `status` and `field` off it (one
lookup, no `isinstance` ladder); the CLIs print `str(error)`. `status` is a hint in HTTP terms
because that is the vocabulary every caller already shares (4xx: the request, 5xx: us or a
dependency), not because the engine knows about HTTP.
"""

from __future__ import annotations


class RetrievalError(Exception):
    """Base of every error the engine raises on purpose."""

    code = "retrieval_error"
    status = 500
    client_message: str | None = None
    """Set when the message is for the operator only: API clients get this text instead."""

    def __init__(self, message: str = "", *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


# -- the request -----------------------------------------------------------------------------


class InvalidRequest(RetrievalError, ValueError):
    """A value the engine cannot accept; `field` names it."""

    code = "invalid_value"
    status = 400


class InvalidFilter(InvalidRequest):
    """A filter that cannot be expressed safely; `field` names the offending part."""

    code = "invalid_filter"

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}", field=f"filters.{field_name}")
        self.part = field_name


class InvalidDocument(InvalidRequest):
    """A document that cannot be stored; `field` names the offending part."""

    code = "invalid_document"

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}", field=field_name)


class UnknownIntent(InvalidRequest):
    """A forced route names an intent the routing table does not have."""

    code = "unknown_route"

    def __init__(self, message: str):
        super().__init__(message, field="route")


# -- the model -------------------------------------------------------------------------------


class ModelMismatch(RetrievalError, ValueError):
    """Something built for one embedding model (a collection, an intent head, a ranker) met another."""

    code = "model_mismatch"
    status = 409


class EncoderUnavailable(RetrievalError):
    """The encoder cannot answer now (service down, timing out, unusable replies); callers may degrade."""

    code = "encoder_unavailable"
    status = 503


class EncoderRejected(RetrievalError, ValueError):
    """The encoder answered but refused the request (wrong key, unknown model, input it won't take).

    Retrying cannot help; a search may still degrade to sparse-only, an ingest must fail.
    """

    code = "encoder_rejected"
    status = 502


# -- the store -------------------------------------------------------------------------------


class StoreError(RetrievalError):
    """The store failed or cannot be reached."""

    code = "store_error"
    status = 503
    client_message: str | None = "the vector store failed; retry later"


class StoreUnavailable(StoreError):
    """The store cannot be reached now (timeout, connection refused); retry later."""

    code = "store_unavailable"
    client_message = None


class PointerError(StoreError):
    """The active-collection pointer cannot be read or written (corrupt file, alias call failed)."""

    code = "pointer_error"


# -- switching collections --------------------------------------------------------------------


class ReindexError(RetrievalError):
    """A reindex or rollback cannot proceed; the live collection is untouched."""

    code = "reindex_failed"
    status = 409


class ReindexInProgress(ReindexError):
    """Another reindex or rollback is running."""

    code = "reindex_in_progress"


class NoPreviousCollection(ReindexError):
    """Nothing to roll back to: no swap has happened yet."""

    code = "no_previous_collection"


class NotReady(RetrievalError):
    """The engine is still starting (model build, fixture ingest) or start-up failed."""

    code = "not_ready"
    status = 503

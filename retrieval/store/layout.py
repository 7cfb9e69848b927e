"""What a chunk collection looks like in Milvus: its fields, its indexes, and the model it records.

The same code serves embedded Milvus Lite and a Milvus server; they differ only in index choice:
Milvus Lite 2.5 offers only FLAT/IVF_FLAT for dense vectors (FLAT is exact and, at 100k rows, fast
enough: see README "Engine choice"), while a server gets HNSW with M=32, efConstruction=200 and
ef=200, and INVERTED indexes on the filtered scalar fields.
"""

from __future__ import annotations

import json
from typing import Any

from pymilvus import DataType, MilvusClient

SCHEMA_VERSION = 1
HNSW_PARAMS = {"M": 32, "efConstruction": 200}
HNSW_EF = 200
"""Search breadth; a search for more hits than this uses the hit count instead."""

_PROPERTY_MODEL, _PROPERTY_DIM, _PROPERTY_SCHEMA = "kb.model_id", "kb.dim", "kb.schema_version"


def model_properties(model_id: str, dim: int) -> dict[str, str]:
    """The model record as collection properties."""
    return {_PROPERTY_MODEL: model_id, _PROPERTY_DIM: str(dim), _PROPERTY_SCHEMA: str(SCHEMA_VERSION)}


def recorded_model(described: dict[str, Any]) -> str:
    """The model id a collection was created for, from `describe_collection`'s answer ("?" if none).

    It is written twice because no single place survives everywhere: Milvus 2.5/2.6 keep both the
    schema description and collection properties, embedded Milvus Lite 2.5 keeps only the
    description (and drops properties), Milvus Lite's own gRPC server (3.x) keeps only properties.
    Properties are read first; the description also covers collections created before them.
    """
    properties = described.get("properties") or {}
    if properties.get(_PROPERTY_MODEL):
        return str(properties[_PROPERTY_MODEL])
    try:
        recorded = json.loads(described.get("description") or "{}")
    except ValueError:
        recorded = {}
    return str(recorded.get("model_id", "?")) if isinstance(recorded, dict) else "?"


def chunk_schema(model_id: str, dim: int) -> Any:
    """The chunk collection's fields; the description records the model (see `recorded_model`)."""
    description = json.dumps({"model_id": model_id, "dim": dim, "schema_version": SCHEMA_VERSION})
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description=description)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=200)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=128)
    schema.add_field("title", DataType.VARCHAR, max_length=1024)
    schema.add_field("kind", DataType.VARCHAR, max_length=32)
    schema.add_field("text", DataType.VARCHAR, max_length=65_535)
    schema.add_field("chunk_index", DataType.INT32)
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("tf", DataType.JSON)
    schema.add_field("doc_len", DataType.INT32)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    return schema


def index_params(lite: bool, lite_index: str = "FLAT", ivf_nlist: int = 1024) -> Any:
    """The indexes: on Milvus Lite FLAT (or IVF_FLAT); on a server HNSW and INVERTED scalar indexes."""
    params = MilvusClient.prepare_index_params()
    # Build parameters go in one nested `params` (sent as one JSON value): the classic wire form,
    # which Milvus servers read and Milvus Lite's own server (3.x) is the only form it reads; the
    # flat form pymilvus 3 sends otherwise is dropped there, silently building with defaults.
    if lite and lite_index == "IVF_FLAT":
        params.add_index(
            "dense",
            index_type="IVF_FLAT",
            metric_type="COSINE",
            params={"params": {"nlist": ivf_nlist}},
        )
    elif lite:
        params.add_index("dense", index_type="FLAT", metric_type="COSINE")
    else:
        params.add_index("dense", index_type="HNSW", metric_type="COSINE", params={"params": HNSW_PARAMS})
        params.add_index("kind", index_type="INVERTED")
        params.add_index("doc_id", index_type="INVERTED")
    # drop_ratio 0: keep every term, so IP equals the BM25 score exactly.
    params.add_index(
        "sparse",
        index_type="SPARSE_INVERTED_INDEX",
        metric_type="IP",
        params={"params": {"drop_ratio_build": 0.0}},
    )
    return params


# What `describe_index` answers besides the build parameters.
_INDEX_BOOKKEEPING = {
    "index_type",
    "metric_type",
    "field_name",
    "index_name",
    "total_rows",
    "indexed_rows",
    "pending_index_rows",
    "state",
    "dim",
    "params",
}


def index_summary(described: dict[str, Any], search: dict[str, Any]) -> dict[str, Any]:
    """The dense index as `describe_index` reports it, and what a search asks of it.

    Build parameters arrive nested under `params` (Milvus Lite's server) or flat as strings
    (embedded Lite, Milvus); both become one dict.
    """
    nested = described.get("params")
    build = dict(nested) if isinstance(nested, dict) else {}
    build.update({k: v for k, v in described.items() if k not in _INDEX_BOOKKEEPING})
    return {
        "type": str(described.get("index_type", "?")),
        "metric": str(described.get("metric_type", "?")),
        "build": build,
        "search": dict(search.get("params") or {}),
    }

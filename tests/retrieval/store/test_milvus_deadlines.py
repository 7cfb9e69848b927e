"""Each kind of store call gets the deadline configured for it."""

from __future__ import annotations

import dataclasses

import pytest

from retrieval.collections.stores import store_for
from retrieval.settings import Settings
from retrieval.store.milvus import MilvusStore

pytestmark = pytest.mark.unit


def test_loading_a_collection_gets_its_own_long_deadline(settings: Settings) -> None:
    # Loading builds the dense index in memory; at 100k+ chunks that outlasts the per-call deadline.
    store = settings.store
    configured = dataclasses.replace(
        settings, store=dataclasses.replace(store, timeout_s=5.0, load_timeout_s=900.0)
    )
    opened = store_for(configured, "kb")
    assert (opened.timeout_s, opened.search_timeout_s, opened.load_timeout_s) == (
        5.0,
        store.search_timeout_s,
        900.0,
    )


def test_no_deadline_is_shorter_than_the_per_call_one() -> None:
    store = MilvusStore("http://127.0.0.1:1", "kb", timeout_s=5.0, search_timeout_s=9.0, load_timeout_s=1.0)
    assert (store.search_timeout_s, store.load_timeout_s) == (5.0, 5.0)

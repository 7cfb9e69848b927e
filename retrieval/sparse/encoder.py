"""The sparse role: text to BM25 vectors, with corpus statistics kept by the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

from retrieval.sparse.bm25 import Bm25Statistics, TermCounts
from retrieval.sparse.tokenizer import JiebaTokenizer
from retrieval.types import SparseVector, StoredTerms


@dataclass
class Bm25Encoder:
    """jieba tokens scored as BM25; the same tokenizer serves documents and queries."""

    tokenizer: JiebaTokenizer
    stats: Bm25Statistics

    def counts(self, text: str) -> TermCounts:
        """Bag of words of a passage (what the statistics and the store keep)."""
        return TermCounts.from_tokens(self.tokenizer.tokenize(text))

    def document_vector(self, counts: TermCounts) -> SparseVector:
        """Document-side weights against the statistics' reference average length."""
        return self.stats.document_vector(counts)

    def stored_vector(self, stored: StoredTerms) -> SparseVector:
        """Document-side weights recomputed from a chunk's stored bookkeeping (re-weighting)."""
        counts, _ = self.stats.counts_from_json(stored.terms, stored.length)
        return self.stats.document_vector(counts)

    def query_vector(self, text: str) -> SparseVector:
        """Query-side IDF weights under the live statistics."""
        return self.stats.query_vector(self.tokenizer.tokenize(text))

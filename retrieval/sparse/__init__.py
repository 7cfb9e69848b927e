"""Sparse retrieval: jieba tokens with a domain lexicon, scored as BM25 sparse vectors."""

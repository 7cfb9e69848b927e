"""Text normalisation shared by indexing, querying and the cache, so all three fold text alike."""

from __future__ import annotations

import unicodedata


def normalise(text: str) -> str:
    """NFKC (full-width to half-width) and lower case, so 'ＡＢＣ' and 'abc' index alike."""
    return unicodedata.normalize("NFKC", text).lower()

"""What query understanding does, as the settings' `[understanding]` section configures it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UnderstandingConfig:
    """Which parts of query understanding run (each can be turned off to measure without it)."""

    correct_names: bool = True
    """Read homophone-misspelt names as the lexicon names they mean (`correction`)."""
    correction_margin: float = 2.0
    """The chosen name needs this many times the next candidate's mentions, else no correction."""
    entity_source: bool = True
    """Give relation questions the entries asked about and the entries they name (`relations`)."""
    entity_named: int = 5
    """At most this many named entries join the entries asked about."""

"""Which documents writes touched since a point in time, so they can be replayed elsewhere."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path


class WriteJournal:
    """Which documents writes touched since a point in time, to replay them into another collection.

    A reindex copies the live collection while ingests and deletes go on; a rollback returns to a
    collection that missed every write since the swap. Both replay the journaled documents from the
    live collection. Each note bumps a sequence number, so `settle` forgets only documents not
    written again while their replay ran. With a `path`, ids are also appended to a JSON Lines file
    (the first line holds the BM25 reference length at the start), so an interrupted reindex can
    resume after a restart without losing writes made in between.
    """

    def __init__(self, reference_avgdl: float, path: Path | None = None):
        self.reference_avgdl = reference_avgdl
        """BM25 reference length when the journal began: sparse vectors copied or kept from then
        are weighted against it, so a different live value means they must be re-weighted."""
        self.path = path
        self._pending: dict[str, int] = {}
        self._seq = 0

    @classmethod
    def open(cls, path: Path, reference_avgdl: float) -> WriteJournal:
        """Continue the journal in `path`, or start one there (recording `reference_avgdl`)."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", encoding="utf-8") as fh:
                fh.write(json.dumps({"reference_avgdl": reference_avgdl}) + "\n")
            return cls(reference_avgdl, path)
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        try:
            header = json.loads(lines[0]) if lines else {}
            journal = cls(float(header.get("reference_avgdl", reference_avgdl)), path)
            for line in lines[1:]:
                journal._remember(str(i) for i in json.loads(line))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"write journal {path} is unreadable: {exc}") from exc
        return journal

    def _remember(self, doc_ids: Iterable[str]) -> list[str]:
        ids = list(dict.fromkeys(doc_ids))
        for doc_id in ids:
            self._seq += 1
            self._pending[doc_id] = self._seq
        return ids

    def note(self, doc_ids: Iterable[str], *, durable: bool = True) -> None:
        """Record that these documents were (about to be) written."""
        ids = self._remember(doc_ids)
        if durable and self.path is not None and ids:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(ids, ensure_ascii=False) + "\n")

    def pending(self) -> dict[str, int]:
        """Documents written and not yet settled, with the sequence number of their last write."""
        return dict(self._pending)

    def settle(self, replayed: Mapping[str, int]) -> None:
        """Forget documents whose replay is done, unless they were written again meanwhile."""
        for doc_id, seq in replayed.items():
            if self._pending.get(doc_id) == seq:
                del self._pending[doc_id]

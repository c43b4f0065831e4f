"""Producer ids for idempotent (and later transactional) producers, unique across broker restarts.

Ids are handed out from blocks reserved on disk, so a restart never reuses an id that a producer
may still hold: a reused id would make the log's sequence checks reject or swallow its batches.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

__all__ = ("ProducerIdManager",)

logger = logging.getLogger(__name__)

_BLOCK = 1000


class ProducerIdManager:
    """Allocates producer ids; persists the end of the reserved block before using it."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._next = 0
        self._block_end = 0
        self._epochs: dict[str, tuple[int, int]] = {}

    def load(self) -> None:
        """Read the reserved block end; ids start after it, so none is handed out twice."""
        if self._path.exists():
            try:
                state = json.loads(self._path.read_text())
            except (OSError, ValueError) as exc:
                raise RuntimeError(
                    f"cannot read producer id state {self._path}: {exc}; "
                    "delete the file only if no idempotent producer is running"
                ) from exc
            self._next = self._block_end = int(state["block_end"])
            self._epochs = {k: (int(v[0]), int(v[1])) for k, v in state.get("txn", {}).items()}

    def next_id(self) -> int:
        """A fresh producer id."""
        if self._next >= self._block_end:
            self._block_end = self._next + _BLOCK
            self._persist()
        pid = self._next
        self._next += 1
        return pid

    def for_transactional_id(self, transactional_id: str) -> tuple[int, int]:
        """(producer_id, epoch) for a transactional id: same id, epoch bumped on every init."""
        pid, epoch = self._epochs.get(transactional_id, (-1, -1))
        if pid < 0:
            pid = self.next_id()
        epoch = epoch + 1
        if epoch > 32_000:
            pid, epoch = self.next_id(), 0
        self._epochs[transactional_id] = (pid, epoch)
        self._persist()
        return pid, epoch

    def _persist(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "block_end": self._block_end,
            "txn": {k: list(v) for k, v in self._epochs.items()},
        }
        with open(tmp, "w") as fh:
            json.dump(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._path)

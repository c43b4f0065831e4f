"""Write-back overlay of the ticketing tables: one table write per key per batch.

Every write to a Faust table is a store write plus a changelog record. When the inventory
agent handles a batch of records, the same key (above all the event's ``inventory``) is
written many times; :class:`WriteBackTable` keeps the batch's writes in a dict, so reads see
them at once, and :meth:`WriteBackTable.flush` writes each dirty key to the table once (a
delete stays a delete, a tombstone in the changelog).

Faust picks the store partition and the changelog partition of a write (and the partition
store of a read) from the *current event*. :class:`BatchCursor` remembers which record of
the batch is being handled; each write remembers that record, and the flush makes it the
current event again before writing the key, so every write lands on the changelog partition
of the record's own source partition (the key's partition: the tables are co-partitioned).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Generic, Literal, TypeVar

from eventpro.tables.state import TicketingState

__all__ = ("BatchCursor", "WriteBackState", "WriteBackTable")

logger = logging.getLogger(__name__)

S = TypeVar("S")
V = TypeVar("V")


class _Deleted:
    """Marks a key the batch deleted (distinct from any stored value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<deleted>"


_DELETED: Any = _Deleted()


class BatchCursor(Generic[S]):
    """The record of the batch being handled; ``activate`` makes a record Faust's current event.

    :param activate: called with a record (or ``None`` when the batch is done) to make it the
        context of the table reads and writes that follow.
    """

    __slots__ = ("_activate", "current")

    def __init__(self, activate: Callable[[S | None], None]) -> None:
        self._activate = activate
        self.current: S | None = None

    def enter(self, source: S) -> None:
        """Reads and writes from now on belong to ``source``."""
        self.current = source
        self._activate(source)

    def restore(self, source: S | None) -> None:
        """Make ``source`` current for a flush write without moving the cursor."""
        self._activate(source)

    def leave(self) -> None:
        """The batch is done: no record is current."""
        self.current = None
        self._activate(None)


class WriteBackTable(MutableMapping[str, V]):
    """A mapping over ``backing`` whose writes stay local until :meth:`flush`.

    Reads of a key the batch wrote see that write (or its deletion); other reads go to
    ``backing`` in the context of the current record. Iteration (``items``/``values``) merges
    the overlay over ``backing``'s own iteration, which spans all of its partitions.
    """

    __slots__ = ("_backing", "_cursor", "_sources", "_values")

    def __init__(self, backing: MutableMapping[str, V], cursor: BatchCursor[Any]) -> None:
        self._backing = backing
        self._cursor = cursor
        self._values: dict[str, Any] = {}
        self._sources: dict[str, Any] = {}

    @property
    def dirty(self) -> int:
        """How many keys the batch wrote or deleted so far."""
        return len(self._values)

    @property
    def deletes(self) -> bool:
        """Whether the batch deleted a key."""
        return any(value is _DELETED for value in self._values.values())

    def __getitem__(self, key: str) -> V:
        value = self._values.get(key, None)
        if value is None:
            return self._backing[key]
        if value is _DELETED:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def get(self, key: str, default: Any = None) -> Any:
        """The batch's value of ``key``, else the table's, else ``default``."""
        value = self._values.get(key, None)
        if value is None:
            return self._backing.get(key, default)
        return default if value is _DELETED else value

    def __contains__(self, key: object) -> bool:
        value = self._values.get(key, None)  # type: ignore[call-overload]
        if value is None:
            return key in self._backing
        return value is not _DELETED

    def __setitem__(self, key: str, value: V) -> None:
        if value is None:
            raise ValueError(f"cannot store None under {key!r}; delete the key instead")
        self._values[key] = value
        self._sources[key] = self._cursor.current

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._values[key] = _DELETED
        self._sources[key] = self._cursor.current

    def items(self) -> Iterator[tuple[str, V]]:  # type: ignore[override]
        """Every live (key, value): the table's, overlaid with the batch's writes."""
        overlay = self._values
        for key, value in self._backing.items():
            if key not in overlay:
                yield key, value
        for key, value in overlay.items():
            if value is not _DELETED:
                yield key, value

    def values(self) -> Iterator[V]:  # type: ignore[override]
        """Every live value (see :meth:`items`)."""
        for _, value in self.items():
            yield value

    def __iter__(self) -> Iterator[str]:
        for key, _ in self.items():
            yield key

    def __len__(self) -> int:
        return sum(1 for _ in self.items())

    def flush(self, only: Literal["all", "stores", "deletes"] = "all") -> int:
        """Write dirty keys to ``backing`` once each, in their record's context; returns writes.

        ``only="stores"`` writes the stored values and keeps the deletions for a later
        ``only="deletes"``. A key the batch deleted is deleted from ``backing`` if it is there
        (a key created and deleted within the batch never reaches the table).
        """
        backing, cursor, sources, values = self._backing, self._cursor, self._sources, self._values
        writes = 0
        done: list[str] = []
        try:
            for key, value in values.items():
                deleted = value is _DELETED
                if (only == "stores" and deleted) or (only == "deletes" and not deleted):
                    continue
                cursor.restore(sources[key])
                done.append(key)
                if deleted:
                    if key in backing:
                        del backing[key]
                        writes += 1
                else:
                    backing[key] = value
                    writes += 1
        except BaseException:
            self.discard()
            raise
        if only == "all":
            self.discard()
        else:
            for key in done:
                del values[key]
                del sources[key]
        return writes

    def discard(self) -> None:
        """Forget the batch's writes without writing them."""
        self._values.clear()
        self._sources.clear()


class WriteBackState:
    """A :class:`TicketingState` over write-back overlays of another state's four tables.

    :attr:`state` is what a processor reads and writes during a batch; :meth:`enter` before
    each record, then the three flushes in order, each after the previous one's records are
    acknowledged by the broker (at least once, a crash keeps any subset of a batch's
    changelog records; this order keeps what survives consistent):

    1. :meth:`flush_claims`: new and changed seat claims (holds, sold claims);
    2. :meth:`flush_records`: counters, user counts and the statuses that record each step
       done (the caller sends the batch's outcomes with them);
    3. :meth:`flush_removals`: claims released or expired.

    A status is never stored without the claims it counts, and a claim is never removed
    before the status and outcome of its release are stored. Counters that a crash left half
    written are recounted from the claims (:mod:`eventpro.tables.reconcile`).
    """

    def __init__(self, base: TicketingState, activate: Callable[[Any], None]) -> None:
        self.cursor: BatchCursor[Any] = BatchCursor(activate)
        self.tables: tuple[WriteBackTable[Any], ...] = (
            WriteBackTable(base.inventory_table, self.cursor),
            WriteBackTable(base.user_tickets_table, self.cursor),
            WriteBackTable(base.holds_table, self.cursor),
            WriteBackTable(base.statuses_table, self.cursor),
        )
        inventory, user_tickets, holds, statuses = self.tables
        self.claims = holds
        self.records = (inventory, user_tickets, statuses)
        self.state = TicketingState(
            inventory_table=inventory,
            holds_table=holds,
            user_tickets_table=user_tickets,
            statuses_table=statuses,
        )

    def enter(self, source: Any) -> None:
        """Table reads and writes from now on belong to the record ``source``."""
        self.cursor.enter(source)

    @property
    def dirty(self) -> int:
        """Keys written or deleted by the batch so far, over all four tables."""
        return sum(table.dirty for table in self.tables)

    def flush_claims(self) -> int:
        """Step 1: store new and changed claims; returns table writes."""
        return self._flush(lambda: self.claims.flush("stores"))

    def flush_records(self) -> int:
        """Step 2: store counters, user counts and statuses; returns table writes."""
        return self._flush(lambda: sum(table.flush() for table in self.records))

    def flush_removals(self) -> int:
        """Step 3: delete released claims; returns table writes."""
        return self._flush(lambda: self.claims.flush("deletes"))

    def flush(self) -> int:
        """All three steps at once (exactly_once: the transaction makes them atomic)."""
        return self.flush_claims() + self.flush_records() + self.flush_removals()

    def _flush(self, step: Callable[[], int]) -> int:
        """Run one flush step; if a write fails, the whole rest of the batch is discarded
        (never carried into the next batch) and the error propagates: the batch's records
        must not be acknowledged."""
        try:
            return step()
        except BaseException:
            self.discard()
            raise
        finally:
            self.cursor.leave()

    def discard(self) -> None:
        """Forget the batch's writes (nothing of it reaches the tables)."""
        for table in self.tables:
            table.discard()
        self.cursor.leave()

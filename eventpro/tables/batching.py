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
from typing import Any, Generic, TypeVar

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

    def flush(self) -> int:
        """Write each dirty key to ``backing`` once, in its record's context; returns writes.

        A key the batch deleted is deleted from ``backing`` if it is there (a key created and
        deleted within the batch never reaches the table).
        """
        backing, cursor, sources = self._backing, self._cursor, self._sources
        writes = 0
        try:
            for key, value in self._values.items():
                cursor.restore(sources[key])
                if value is _DELETED:
                    if key in backing:
                        del backing[key]
                        writes += 1
                else:
                    backing[key] = value
                    writes += 1
        finally:
            self._values.clear()
            sources.clear()
        return writes

    def discard(self) -> None:
        """Forget the batch's writes without writing them."""
        self._values.clear()
        self._sources.clear()


class WriteBackState:
    """A :class:`TicketingState` over write-back overlays of another state's four tables.

    :attr:`state` is what a processor reads and writes during a batch; :meth:`enter` before
    each record, :meth:`flush` once at the end of the batch. Tables are flushed in the
    order of a single record's writes (inventory, user counts, holds, statuses last), so the
    request status, which records that a step is done, is still written after what it
    records.
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

    def flush(self) -> int:
        """Write every dirty key once; returns how many table writes that took.

        If a write fails, the rest of the batch is discarded (never carried into the next
        batch) and the error propagates: the batch's records must not be acknowledged.
        """
        try:
            return sum(table.flush() for table in self.tables)
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

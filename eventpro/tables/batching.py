"""Write-back overlay of the ticketing tables: one table write per key per batch.

Every write to a Faust table is a store write plus a changelog record. When the inventory
agent handles a batch of records, the same key (above all the event's ``inventory``) is
written many times; :class:`WriteBackTable` keeps the batch's writes in a dict, so reads see
them at once; :meth:`WriteBackTable.take` hands out the batch's writes, each dirty key once,
and :meth:`WriteBackTable.write` writes them to the table (a delete stays a delete, a
tombstone in the changelog), possibly while the next batch is decided over the overlay.

Faust picks the store partition and the changelog partition of a write (and the partition
store of a read) from the *current event*. :class:`BatchCursor` remembers which record of
the batch is being handled; each write remembers that record, and writing it makes it the
current event again before writing the key, so every write lands on the changelog partition
of the record's own source partition (the key's partition: the tables are co-partitioned).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from faust.streams import _current_event
from faust.types import EventT

from eventpro.tables.state import TicketingState

__all__ = (
    "BatchCursor",
    "BatchWrites",
    "PendingWrite",
    "WriteBackState",
    "WriteBackTable",
    "make_current",
)

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


def make_current(event: EventT | None) -> None:
    """Make ``event`` Faust's current event in this task (store partition, changelog partition).

    The ``activate`` of a :class:`BatchCursor` over Faust tables.
    """
    _current_event.set(None if event is None else weakref.ref(event))


PendingWrite = tuple["WriteBackTable[Any]", str, Any, Any, int]
"""One write a batch made and has not written to the table yet: (overlay, key, value or the
deletion mark, source record, version of the key in the overlay)."""


class WriteBackTable(MutableMapping[str, V]):
    """A mapping over ``backing`` whose writes stay local until they are written out.

    Reads of a key a batch wrote see that write (or its deletion) until it reaches
    ``backing``; other reads go to ``backing`` in the context of the current record.
    Iteration (``items``/``values``) merges the overlay over ``backing``'s own iteration, which
    spans all of its partitions.

    :meth:`take` hands out the writes made since the last take (one batch's), and
    :meth:`write` writes such a set to ``backing``: a batch's writes may wait for the broker
    while the next batch is decided over them. A key written again meanwhile keeps its newer
    value in the overlay (each write has a version), so the older write never shadows it.
    """

    __slots__ = ("_backing", "_cursor", "_fresh", "_sources", "_values", "_version", "_versions")

    def __init__(self, backing: MutableMapping[str, V], cursor: BatchCursor[Any]) -> None:
        self._backing = backing
        self._cursor = cursor
        self._values: dict[str, Any] = {}
        self._sources: dict[str, Any] = {}
        self._versions: dict[str, int] = {}
        self._fresh: dict[str, None] = {}
        """Keys written since the last :meth:`take` (insertion ordered)."""
        self._version = 0

    @property
    def dirty(self) -> int:
        """How many keys hold writes not yet written to ``backing``."""
        return len(self._values)

    def __getitem__(self, key: str) -> V:
        value = self._values.get(key, None)
        if value is None:
            return self._backing[key]
        if value is _DELETED:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def get(self, key: str, default: Any = None) -> Any:
        """The overlay's value of ``key``, else the table's, else ``default``."""
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
        self._record(key, value)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._record(key, _DELETED)

    def _record(self, key: str, value: Any) -> None:
        self._version += 1
        self._values[key] = value
        self._sources[key] = self._cursor.current
        self._versions[key] = self._version
        self._fresh[key] = None

    def items(self) -> Iterator[tuple[str, V]]:  # type: ignore[override]
        """Every live (key, value): the table's, overlaid with the pending writes."""
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

    def take(self, only: Literal["all", "stores", "deletes"] = "all") -> list[PendingWrite]:
        """The writes made since the last take (``only`` stored values or deletions), each key
        once with its latest value; they stay readable here until :meth:`write`."""
        fresh, values = self._fresh, self._values
        taken: list[PendingWrite] = []
        for key in list(fresh):
            value = values[key]
            deleted = value is _DELETED
            if (only == "stores" and deleted) or (only == "deletes" and not deleted):
                continue
            del fresh[key]
            taken.append((self, key, value, self._sources[key], self._versions[key]))
        return taken

    def write(self, pending: list[PendingWrite]) -> int:
        """Write ``pending`` (taken from this overlay) to ``backing``; returns table writes.

        Stored values go in one ``backing.store_many`` call when ``backing`` offers it (a
        :class:`~eventpro.tables.changelog.GatheringTable`, whose sources are Faust events);
        deletions, and every write when it cannot, go key by key (:meth:`write_one`).
        """
        rest = pending
        writes = 0
        store_many = getattr(self._backing, "store_many", None)
        if store_many is not None:
            stores = [write for write in pending if write[2] is not _DELETED]
            if stores and store_many([(source, key, value) for _, key, value, source, _ in stores]):
                for _, key, _, _, version in stores:
                    self._written(key, version)
                writes = len(stores)
                rest = [write for write in pending if write[2] is _DELETED]
        return writes + sum(
            self.write_one(key, value, source, version) for _, key, value, source, version in rest
        )

    def write_one(self, key: str, value: Any, source: Any, version: int) -> int:
        """Write one taken write to ``backing`` in its record's context; returns table writes.

        A key the batch deleted is deleted from ``backing`` if it is there (a key created and
        deleted within a batch never reaches the table). A key not written since it was taken
        leaves the overlay.
        """
        self._cursor.restore(source)
        backing = self._backing
        writes = 0
        if value is _DELETED:
            if key in backing:
                del backing[key]
                writes = 1
        else:
            backing[key] = value
            writes = 1
        self._written(key, version)
        return writes

    def _written(self, key: str, version: int) -> None:
        """``key``'s write ``version`` reached ``backing``: it leaves the overlay unless the
        key was written again since."""
        if self._versions.get(key) == version:
            del self._values[key], self._sources[key], self._versions[key]

    def flush(self, only: Literal["all", "stores", "deletes"] = "all") -> int:
        """Take and write at once; returns table writes. A failed write discards the overlay."""
        try:
            return self.write(self.take(only))
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Forget every pending write without writing it."""
        self._values.clear()
        self._sources.clear()
        self._versions.clear()
        self._fresh.clear()


@dataclass(frozen=True, slots=True)
class BatchWrites:
    """One batch's writes, in the three sets written in order (see :class:`WriteBackState`)."""

    claims: list[PendingWrite]
    records: list[PendingWrite]
    removals: list[PendingWrite]


class WriteBackState:
    """A :class:`TicketingState` over write-back overlays of another state's four tables.

    :attr:`state` is what a processor reads and writes; :meth:`enter` before each record,
    :meth:`seal` at the end of a batch, then :meth:`write` its three sets in order, each after
    the previous one's changelog records are acknowledged by the broker (at least once, a
    crash keeps any subset of a batch's changelog records; this order keeps what survives
    consistent):

    1. ``claims``: new and changed seat claims (holds, sold claims);
    2. ``records``: counters, user counts and the statuses that record each step done (the
       caller sends the batch's outcomes with them);
    3. ``removals``: claims released or expired.

    A status is never stored without the claims it counts, and a claim is never removed
    before the status and outcome of its release are stored. Counters that a crash left half
    written are recounted from the claims (:mod:`eventpro.tables.reconcile`). Later batches
    may be decided while a batch's sets wait: they read its writes from the overlay.
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
        """Keys with writes not yet written to the tables, over all four tables."""
        return sum(table.dirty for table in self.tables)

    def seal(self) -> BatchWrites:
        """End the batch: its writes, to be written with :meth:`write` in order."""
        self.cursor.leave()
        return BatchWrites(
            claims=self.claims.take("stores"),
            records=[write for table in self.records for write in table.take()],
            removals=self.claims.take("deletes"),
        )

    def write(self, pending: list[PendingWrite]) -> int:
        """Write one set of a sealed batch; returns table writes.

        If a write fails, every pending write is discarded (never carried into a later batch)
        and the error propagates: the batch's records must not be acknowledged.
        """
        by_table: dict[int, list[PendingWrite]] = {}  # by id: a mapping is not hashable
        for write in pending:
            by_table.setdefault(id(write[0]), []).append(write)
        try:
            return sum(writes[0][0].write(writes) for writes in by_table.values())
        except BaseException:
            self.discard()
            raise
        finally:
            self.cursor.leave()

    def flush(self) -> int:
        """Seal the batch and write all three sets at once (exactly_once: the transaction
        makes them atomic)."""
        writes = self.seal()
        return self.write(writes.claims) + self.write(writes.records) + self.write(writes.removals)

    def discard(self) -> None:
        """Forget every pending write (nothing of it reaches the tables)."""
        for table in self.tables:
            table.discard()
        self.cursor.leave()

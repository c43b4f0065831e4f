"""TopicsStore: create, persist, reload, delete, lookups and validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.batches import make_batch, read_all_records

from eventpro.broker.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidTopicError,
    TopicExistsError,
    UnknownTopicError,
)
from eventpro.broker.log import LogConfig
from eventpro.broker.topics_store import TopicsStore

T0 = 1_700_000_000_000


@pytest.fixture
def store(tmp_path: Path) -> TopicsStore:
    store = TopicsStore(tmp_path, default_partitions=3)
    store.load()
    return store


def test_create_persists_and_reloads(tmp_path: Path, store: TopicsStore) -> None:
    info = store.create_topic("orders", 4, {"cleanup.policy": "compact", "retention.ms": None})
    assert (info.name, info.partitions) == ("orders", 4)
    assert dict(info.configs) == {"cleanup.policy": "compact"}
    store.log("orders", 2).append(make_batch([b"a", b"b"]))
    meta = json.loads((tmp_path / "topics" / "orders" / "topic.json").read_text())
    assert meta["topic_id"] == str(info.topic_id)
    store.close()

    again = TopicsStore(tmp_path)
    again.load()
    loaded = again.topic("orders")
    assert loaded == info
    assert again.topic_by_id(info.topic_id) == info
    assert again.log_config("orders").cleanup_policy == frozenset({"compact"})
    assert [v for _, _, v in read_all_records(again.log("orders", 2).read(0, 1000))] == [b"a", b"b"]
    assert again.log("orders", 0).end_offset == 0


def test_default_partitions_and_listing(store: TopicsStore) -> None:
    store.create_topic("a", -1)
    store.create_topic("b", 1)
    assert store.topic("a").partitions == 3  # type: ignore[union-attr]
    assert sorted(t.name for t in store.topics()) == ["a", "b"]
    assert store.topic("missing") is None


def test_existing_topic_is_rejected(store: TopicsStore) -> None:
    store.create_topic("t", 1)
    with pytest.raises(TopicExistsError):
        store.create_topic("t", 2)


@pytest.mark.parametrize("name", ["", ".", "..", "bad name", "x" * 250, "a/b", "é"])
def test_invalid_names_are_rejected(store: TopicsStore, name: str) -> None:
    with pytest.raises(InvalidTopicError):
        store.create_topic(name, 1)
    assert store.topics() == []


def test_valid_edge_names(store: TopicsStore) -> None:
    for name in ("x" * 249, "a.b_c-D9", "...x"):
        store.create_topic(name, 1)
    assert len(store.topics()) == 3


def test_invalid_partitions_and_configs(store: TopicsStore) -> None:
    with pytest.raises(InvalidPartitionsError):
        store.create_topic("t", 0)
    with pytest.raises(InvalidConfigError):
        store.create_topic("t", 1, {"retention.ms": "forever"})
    assert store.topic("t") is None


def test_unknown_topic_or_partition(store: TopicsStore) -> None:
    store.create_topic("t", 2)
    with pytest.raises(UnknownTopicError):
        store.log("t", 2)
    with pytest.raises(UnknownTopicError):
        store.log("nope", 0)
    with pytest.raises(UnknownTopicError):
        store.delete_topic("nope")


def test_delete_removes_files_and_allows_recreate(tmp_path: Path, store: TopicsStore) -> None:
    old = store.create_topic("t", 2)
    store.log("t", 0).append(make_batch([b"x"]))
    store.delete_topic("t")
    assert store.topic("t") is None
    assert store.topic_by_id(old.topic_id) is None
    assert not (tmp_path / "topics" / "t").exists()
    new = store.create_topic("t", 1)
    assert new.topic_id != old.topic_id
    assert store.log("t", 0).end_offset == 0
    store.close()
    again = TopicsStore(tmp_path)
    again.load()
    assert [t.name for t in again.topics()] == ["t"]


def test_maintenance_applies_retention_and_compaction(tmp_path: Path) -> None:
    store = TopicsStore(tmp_path, defaults=LogConfig(segment_bytes=300))
    store.load()
    store.create_topic("events", 1, {"retention.ms": "1000"})
    store.create_topic("changelog", 1, {"cleanup.policy": "compact"})
    for i in range(10):
        store.log("events", 0).append(make_batch([b"e" * 50], timestamp_ms=T0))
        store.log("changelog", 0).append(make_batch([f"{i}".encode()], [b"k"], timestamp_ms=T0))
    store.run_maintenance(now_ms=T0 + 5_000)
    assert store.log("events", 0).log_start_offset > 0
    compacted = read_all_records(store.log("changelog", 0).read(0, 1 << 20))
    assert len(compacted) < 10
    assert compacted[-1] == (9, b"k", b"9")
    store.close()

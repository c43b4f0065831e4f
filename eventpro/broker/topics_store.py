"""Every topic's metadata and partition logs under one data directory.

Layout: ``<data_dir>/topics/<name>/topic.json`` (name, topic id, partition count, configs) and
``<data_dir>/topics/<name>/<partition>/`` for each partition's segments. Metadata is written
atomically (temp file, fsync, rename) so a crash leaves either the old or the new file.
Deleted topics are first renamed into ``<data_dir>/deleted/`` so a crash mid-delete never leaves a
half-removed topic that would be loaded again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from eventpro.broker.errors import (
    InvalidPartitionsError,
    InvalidTopicError,
    StorageError,
    TopicExistsError,
    UnknownTopicError,
)
from eventpro.broker.log import LogConfig, PartitionLog

__all__ = ("TopicInfo", "TopicsStore", "validate_topic_name")

logger = logging.getLogger(__name__)

_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")
_META_FILE = "topic.json"


def validate_topic_name(name: str) -> None:
    """Kafka's rules: 1-249 characters of [a-zA-Z0-9._-], and not '.' or '..'."""
    if name in (".", "..") or not _TOPIC_NAME.fullmatch(name):
        raise InvalidTopicError(
            f"invalid topic name {name!r}: use 1-249 characters of a-z, A-Z, 0-9, '.', '_', '-'"
            " (not '.' or '..')"
        )


@dataclass(frozen=True)
class TopicInfo:
    """A topic's identity and settings as clients see them."""

    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass
class _Topic:
    info: TopicInfo
    config: LogConfig
    logs: list[PartitionLog]


class TopicsStore:
    """Creates, loads and deletes topics; hands out their partition logs."""

    def __init__(
        self, data_dir: Path, *, defaults: LogConfig | None = None, default_partitions: int = 1
    ) -> None:
        self.data_dir = Path(data_dir)
        self.defaults = defaults if defaults is not None else LogConfig()
        self.default_partitions = default_partitions
        self._topics: dict[str, _Topic] = {}
        self._by_id: dict[uuid.UUID, str] = {}

    @property
    def _topics_dir(self) -> Path:
        return self.data_dir / "topics"

    def load(self) -> None:
        """Open every persisted topic; leftovers of interrupted deletes are removed."""
        self._topics_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.data_dir / "deleted", ignore_errors=True)
        for meta in sorted(self._topics_dir.glob(f"*/{_META_FILE}")):
            try:
                raw = json.loads(meta.read_bytes())
                configs = {str(k): str(v) for k, v in raw.get("configs", {}).items()}
                info = TopicInfo(
                    name=str(raw["name"]),
                    topic_id=uuid.UUID(raw["topic_id"]),
                    partitions=int(raw["partitions"]),
                    configs=MappingProxyType(configs),
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError(
                    f"{meta} is unreadable ({exc}); fix or remove that topic directory"
                ) from exc
            config = LogConfig.from_topic_configs(info.configs, self.defaults)
            self._open_topic(info, config)
        logger.info("Loaded %d topic(s) from %s", len(self._topics), self._topics_dir)

    def _open_topic(self, info: TopicInfo, config: LogConfig) -> None:
        directory = self._topics_dir / info.name
        logs = [PartitionLog.open(directory / str(p), config) for p in range(info.partitions)]
        self._topics[info.name] = _Topic(info, config, logs)
        self._by_id[info.topic_id] = info.name

    def create_topic(
        self, name: str, partitions: int = -1, configs: Mapping[str, str | None] | None = None
    ) -> TopicInfo:
        """Create and persist a topic; ``partitions=-1`` means the store's default count."""
        validate_topic_name(name)
        if name in self._topics:
            raise TopicExistsError(f"topic {name!r} already exists")
        if partitions == -1:
            partitions = self.default_partitions
        if partitions < 1:
            raise InvalidPartitionsError(
                f"topic {name!r}: partitions must be >= 1, not {partitions}"
            )
        kept = {k: v for k, v in (configs or {}).items() if v is not None}
        config = LogConfig.from_topic_configs(kept, self.defaults)
        info = TopicInfo(name, uuid.uuid4(), partitions, MappingProxyType(kept))
        directory = self._topics_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        payload = {
            "name": name,
            "topic_id": str(info.topic_id),
            "partitions": partitions,
            "configs": kept,
        }
        tmp = directory / f"{_META_FILE}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(json.dumps(payload, indent=2, sort_keys=True).encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, directory / _META_FILE)
        _fsync_dir(directory)
        self._open_topic(info, config)
        logger.info("Created topic %s with %d partition(s) %s", name, partitions, kept or "")
        return info

    def delete_topic(self, name: str) -> None:
        """Close the topic's logs and remove its files."""
        topic = self._topics.pop(name, None)
        if topic is None:
            raise UnknownTopicError(f"topic {name!r} does not exist")
        del self._by_id[topic.info.topic_id]
        for log in topic.logs:
            log.close()
        trash = self.data_dir / "deleted"
        trash.mkdir(parents=True, exist_ok=True)
        target = trash / f"{name}-{topic.info.topic_id}"
        os.replace(self._topics_dir / name, target)
        shutil.rmtree(target, ignore_errors=True)
        logger.info("Deleted topic %s", name)

    def topic(self, name: str) -> TopicInfo | None:
        topic = self._topics.get(name)
        return topic.info if topic is not None else None

    def topics(self) -> list[TopicInfo]:
        return [t.info for t in self._topics.values()]

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        name = self._by_id.get(topic_id)
        return self._topics[name].info if name is not None else None

    def log_config(self, name: str) -> LogConfig:
        topic = self._topics.get(name)
        if topic is None:
            raise UnknownTopicError(f"topic {name!r} does not exist")
        return topic.config

    def log(self, name: str, partition: int) -> PartitionLog:
        """The log of one partition; UnknownTopicError if the topic or partition is absent."""
        topic = self._topics.get(name)
        if topic is None or not 0 <= partition < len(topic.logs):
            raise UnknownTopicError(f"unknown topic-partition {name}-{partition}")
        return topic.logs[partition]

    def run_maintenance(self, now_ms: int) -> None:
        """Retention, due compactions and interval fsyncs over every partition log."""
        for topic in list(self._topics.values()):
            for log in topic.logs:
                log.sync_if_due(now_ms)
                log.enforce_retention(now_ms)
                if log.compaction_due(now_ms):
                    log.compact(now_ms)

    def close(self) -> None:
        for topic in self._topics.values():
            for log in topic.logs:
                log.close()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

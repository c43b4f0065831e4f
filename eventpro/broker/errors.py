"""Broker errors: each carries the Kafka error code the protocol layer puts in its response.

The storage and group layers raise these; the request handlers catch :class:`BrokerError` and answer
with ``error_code`` instead of dropping the connection.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from kio.schema.errors import ErrorCode

__all__ = (
    "BrokerError",
    "CorruptRecordError",
    "InvalidConfigError",
    "InvalidPartitionsError",
    "InvalidProducerEpochError",
    "InvalidTopicError",
    "MessageTooLargeError",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceError",
    "StorageError",
    "TopicExistsError",
    "UnknownTopicError",
)

logger = logging.getLogger(__name__)


class BrokerError(Exception):
    """Root of every error the broker turns into a Kafka error code."""

    error_code: ClassVar[ErrorCode] = ErrorCode.unknown_server_error


class CorruptRecordError(BrokerError):
    """A record batch failed validation (magic, size or CRC); nothing of the request was written."""

    error_code = ErrorCode.corrupt_message


class OffsetOutOfRangeError(BrokerError):
    """The requested offset is outside [log_start_offset, end_offset]; the client must reset."""

    error_code = ErrorCode.offset_out_of_range


class OutOfOrderSequenceError(BrokerError):
    """An idempotent producer skipped sequence numbers; it must re-initialise its producer id."""

    error_code = ErrorCode.out_of_order_sequence_number


class InvalidProducerEpochError(BrokerError):
    """A producer with an older epoch than the broker knows (a zombie) tried to write."""

    error_code = ErrorCode.invalid_producer_epoch


class UnknownTopicError(BrokerError):
    """The topic or partition does not exist; create it first (or enable auto-creation)."""

    error_code = ErrorCode.unknown_topic_or_partition


class TopicExistsError(BrokerError):
    """CreateTopics for a name that is already taken."""

    error_code = ErrorCode.topic_already_exists


class InvalidTopicError(BrokerError):
    """The topic name breaks Kafka's rules (1-249 chars of [a-zA-Z0-9._-], not '.' or '..')."""

    error_code = ErrorCode.invalid_topic_exception


class InvalidConfigError(BrokerError):
    """A topic config value cannot be parsed or is out of range."""

    error_code = ErrorCode.invalid_config


class InvalidPartitionsError(BrokerError):
    """A partition count below 1 was requested."""

    error_code = ErrorCode.invalid_partitions


class MessageTooLargeError(BrokerError):
    """The produced records exceed the topic's max.message.bytes; raise the limit or send less."""

    error_code = ErrorCode.message_too_large


class StorageError(BrokerError):
    """The data directory holds something the broker cannot read; the message names the file."""

    error_code = ErrorCode.kafka_storage_error

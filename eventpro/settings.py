"""Configuration from the environment (``EVENTPRO_*``), with defaults for the embedded broker.

One frozen settings object is read once per process (:func:`get_settings`); everything else
receives values from it instead of reading ``os.environ`` itself.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = (
    "AGENT_GROUPS",
    "KafkaSaslMechanism",
    "KafkaSecurityProtocol",
    "ProcessingGuarantee",
    "Settings",
    "get_settings",
)

ProcessingGuarantee = Literal["at_least_once", "exactly_once"]
KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

AGENT_GROUPS: tuple[str, ...] = ("inventory", "payments", "notifications", "analytics", "retry")
"""What ``EVENTPRO_AGENTS`` may name: the third part of an agent's name
(``eventpro.agents.<group>[.<topic>]``); ``retry`` covers every retry-topic agent."""


class Settings(BaseSettings):
    """EventPro settings; each field maps to ``EVENTPRO_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="EVENTPRO_", frozen=True, extra="ignore")

    app_id: str = Field("eventpro", description="Faust app id: consumer group and topic prefix.")
    broker_url: str = Field(
        "kafka://127.0.0.1:9092", description="Kafka bootstrap URL(s), e.g. kafka://host:9092."
    )
    topic_prefix: str = Field("", description="Prefix put before every EventPro topic name.")
    partitions: int = Field(4, ge=1, le=1024, description="Partitions of every EventPro topic.")
    replication_factor: int = Field(1, ge=1, description="Replication factor of created topics.")
    processing_guarantee: ProcessingGuarantee = "at_least_once"
    data_dir: Path = Field(Path("eventpro-data"), description="Worker state (RocksDB tables).")
    store: str = Field("rocksdb://", description="Faust table store: rocksdb:// or memory://.")
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535)
    hold_ttl_seconds: float = Field(
        600.0, gt=0, description="How long reserved seats are held waiting for payment."
    )
    expiry_tick_seconds: float = Field(
        1.0, gt=0, description="How often the leader asks each partition to expire holds."
    )
    dedup_ttl_seconds: float = Field(
        86_400.0, gt=0, description="How long a request_id is remembered for deduplication."
    )
    default_max_per_user: int = Field(8, ge=1, description="Per-user ticket limit of new events.")
    max_quantity: int = Field(20, ge=1, description="Most tickets one request may ask for.")
    table_standby_replicas: int = Field(1, ge=0)
    inventory_batch_size: int = Field(
        0,
        ge=0,
        description="Records the inventory agent decides per batch (one table write per key "
        "per batch); 1 = per record; 0 = 1000, or 1 with exactly_once.",
    )
    inventory_batch_within_ms: float = Field(
        20.0, ge=0.1, description="How long a batch waits to fill: the latency batching adds."
    )
    inventory_batch_behind_ms: float = Field(
        250.0,
        ge=0.1,
        description="How long a batch waits to fill when a full batch already waits in the "
        "partitions (a backlog): bigger batches, fewer per-batch costs.",
    )
    producer_buffer_messages: int = Field(
        0,
        ge=0,
        description="Changelog records Faust buffers before it pauses streams; 0 = 4 x batch. "
        "Matters under exactly_once: at least once the inventory and analytics agents produce "
        "their changelog records themselves.",
    )
    rocksdb_write_buffer_mb: int = Field(
        4,
        ge=1,
        description="RocksDB memtable size (MiB) of each table partition's store; Faust's "
        "default, 64 MiB x 3 per store, lets a worker's memory grow by gigabytes.",
    )
    rocksdb_memory_mb: int = Field(
        256,
        ge=8,
        description="RocksDB memory of the whole worker (MiB): one read cache every table "
        "store shares, which their memtables are charged to as well (at most half of it).",
    )
    rocksdb_block_cache_mb: int | None = Field(
        None,
        description="Retired: each store had its own read cache of this size. The stores now "
        "share one (EVENTPRO_ROCKSDB_MEMORY_MB); a worker warns when this is still set.",
    )
    agents: str = Field(
        "",
        description="Comma-separated agents this worker runs (inventory, payments, "
        "notifications, analytics, retry); empty = all. For benchmarks and debugging: every "
        "worker of one app id must run the same set, or partitions go unconsumed.",
    )
    log_level: str = "WARNING"
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop",
        description="The worker's event loop: uvloop (faster scheduling and sockets; falls back "
        "to asyncio where it is not installed) or asyncio's own.",
    )
    gc_young_threshold: int = Field(
        50_000,
        ge=1,
        description="Allocations between two collections of Python's youngest generation in "
        "the worker (Python's default: 700).",
    )
    # Deployment and security (docs/operations.md, docs/security.md). Secrets default to ""
    # (unset) and can come from a file instead (``*_file``), e.g. a Docker/Kubernetes secret.
    web_advertised_host: str = Field(
        "", description="Host peers dial for this worker's API (default: web_host)."
    )
    admin_token: str = Field("", repr=False, description="Bearer token for organiser writes.")
    admin_token_file: str = Field("", description="File holding the organiser token.")
    max_body_bytes: int = Field(16_384, ge=256, description="Largest accepted request body.")
    rate_limit_per_user: float = Field(
        0.0, ge=0, description="Ticket requests per second per user_id and worker; 0 = off."
    )
    rate_limit_burst: int = Field(10, ge=1, description="Requests a user may send at once.")
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: KafkaSaslMechanism = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = Field("", repr=False)
    kafka_sasl_password_file: str = ""
    kafka_ssl_cafile: str = Field("", description="CA bundle that signed the brokers' certs.")
    kafka_ssl_certfile: str = Field("", description="Client certificate (mutual TLS).")
    kafka_ssl_keyfile: str = Field("", description="Client private key (mutual TLS).")
    kafka_ssl_key_password_file: str = ""
    kafka_ssl_check_hostname: bool = True

    @field_validator("broker_url")
    @classmethod
    def _kafka_scheme(cls, value: str) -> str:
        if "://" not in value:
            value = f"kafka://{value}"
        return value

    @field_validator("agents")
    @classmethod
    def _known_agents(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = sorted(set(names) - set(AGENT_GROUPS))
        if unknown:
            raise ValueError(f"unknown agents {unknown}; choose from {', '.join(AGENT_GROUPS)}")
        return ",".join(names)

    def runs_agent(self, agent_name: str) -> bool:
        """Whether this worker runs the agent named ``eventpro.agents.<group>[...]``."""
        if not self.agents:
            return True
        parts = agent_name.split(".")
        return len(parts) > 2 and parts[2] in self.agents.split(",")

    def topic_name(self, name: str) -> str:
        """The full topic name for one of EventPro's logical topics."""
        return f"{self.topic_prefix}{name}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()

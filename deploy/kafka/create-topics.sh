#!/bin/sh
# Topic-init step of docker-compose.yml: create EventPro's topics on the Kafka cluster before
# any worker starts, replicated and with min.insync.replicas, so acks=all survives one broker.
# Idempotent: existing topics are kept, but a partition count that differs from the wanted
# one stops the init (changing it would break co-partitioning by event_id; see
# docs/operations.md). Workers create their table changelog topics themselves with
# EVENTPRO_REPLICATION_FACTOR; the brokers' min.insync.replicas default covers those.
#
# Environment: KAFKA_BOOTSTRAP (host:port), EVENTPRO_PARTITIONS, EVENTPRO_TOPIC_PREFIX,
# EVENTPRO_REPLICATION_FACTOR, MIN_INSYNC_REPLICAS, KAFKA_BIN, and for a secured cluster
# EVENTPRO_KAFKA_SECURITY_PROTOCOL / _SASL_MECHANISM / _SASL_USERNAME / _SASL_PASSWORD(_FILE)
# (see client-config.sh).
set -eu

BOOTSTRAP="${KAFKA_BOOTSTRAP:-kafka-1:9092}"
PARTITIONS="${EVENTPRO_PARTITIONS:-12}"
PREFIX="${EVENTPRO_TOPIC_PREFIX:-}"
REPLICATION="${EVENTPRO_REPLICATION_FACTOR:-3}"
MIN_ISR="${MIN_INSYNC_REPLICAS:-2}"
KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"
HERE="$(dirname "$0")"

# Must match eventpro/topics.py (tests/unit/deploy checks it):
# logical name       partitions      retention.ms
TOPICS="
ticket-requests      $PARTITIONS     604800000
reservations         $PARTITIONS     604800000
payments             $PARTITIONS     604800000
orders               $PARTITIONS     2592000000
notifications        $PARTITIONS     259200000
inventory-ticks      $PARTITIONS     3600000
retry-1              $PARTITIONS     86400000
retry-2              $PARTITIONS     86400000
retry-3              $PARTITIONS     86400000
dlq                  1               2592000000
"

CONFIG="$(sh "$HERE/client-config.sh" "${CLIENT_PROPERTIES:-/tmp/eventpro-client.properties}")"

topics() {
    # shellcheck disable=SC2086
    "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" $CONFIG "$@"
}

echo "waiting for Kafka at $BOOTSTRAP ..."
tries=0
until topics --list >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 60 ]; then
        echo "Kafka at $BOOTSTRAP did not answer for 2 minutes; check the kafka-N containers" >&2
        exit 1
    fi
    sleep 2
done

echo "$TOPICS" | while read -r name partitions retention; do
    [ -n "$name" ] || continue
    topic="$PREFIX$name"
    topics --create --if-not-exists --topic "$topic" \
        --partitions "$partitions" --replication-factor "$REPLICATION" \
        --config min.insync.replicas="$MIN_ISR" \
        --config cleanup.policy=delete \
        --config retention.ms="$retention"
    actual="$(topics --describe --topic "$topic" | grep -c 'Partition: ' || true)"
    if [ "$actual" != "$partitions" ]; then
        echo "topic $topic has $actual partitions, EventPro expects $partitions" \
            "(EVENTPRO_PARTITIONS): keep the old count or migrate, see docs/operations.md" >&2
        exit 1
    fi
    echo "topic $topic: $partitions partitions, replication $REPLICATION, min ISR $MIN_ISR"
done
echo "EventPro topics ready"

"""Embedded single-node Kafka-protocol broker for development, tests and single-machine use."""

"""EventPro: a real-time ticketing back end on Faust, with an embedded Kafka-protocol broker."""

__version__ = "0.1.0"
